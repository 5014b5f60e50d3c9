"""The melody models: the code students read, and the speed kernels it runs by default.

* :mod:`labkit.models.melody`: :class:`ModelConfig`, :class:`MelodyLSTM` (a Flax NNX stacked LSTM:
  ``nnx.OptimizedLSTMCell`` run by a plain ``lax.scan``, autodiff, ``jax.random.bernoulli``
  dropout), :class:`AttentionMelodyLSTM`, :class:`ConditionedMelodyLSTM` (conditions heard at every
  step, :mod:`labkit.conditioned`), :func:`make_model`, :func:`count_params`,
  :func:`embed_tokens`.
* :mod:`labkit.models.kernels`: the same functions, faster (an LSTM layer with a hand-written
  backward pass, byte dropout, the inverse-CDF token draw of :mod:`labkit.sample`), each tested
  equal to the plain code. They are the default; ``make_model(config, use_kernels=False)`` runs
  the plain code.

Notebook: 04_lstm_melody_model.ipynb
"""
from labkit.models.melody import (AttentionMelodyLSTM, ConditionedMelodyLSTM, MelodyLSTM, MelodyModel,
                                  ModelConfig, count_params, embed_tokens, make_model)

__all__ = ["AttentionMelodyLSTM", "ConditionedMelodyLSTM", "MelodyLSTM", "MelodyModel", "ModelConfig", "count_params",
           "embed_tokens", "make_model"]
