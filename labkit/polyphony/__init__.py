"""Polyphony: piano rolls of 88 keys, models of whole frames, and their training (issue 17).

A piano roll is a float32 array ``[T, 88]``: ``roll[t, k] == 1`` while MIDI pitch ``21 + k`` sounds in frame
``t`` (a frame is one time step: an eighth note for the corpus's chorales, whatever the data set used for a
pickle in the Boulanger-Lewandowski layout). Models predict each frame from the frames before it and are
scored, as Boulanger-Lewandowski et al. (2012) and Bai, Kolter and Koltun (2018) score them, by the
negative log-likelihood per frame in nats: the sum over the 88 keys, averaged over every frame of a split.

* :mod:`labkit.polyphony.data`: pickles in the Boulanger-Lewandowski layout (read without running code),
  the Bach chorales of the shipped corpus as piano rolls, transposition, padded batches with a mask.
* :mod:`labkit.polyphony.models`: :class:`~labkit.polyphony.models.SigmoidLSTM` (88 independent sigmoids,
  binary cross-entropy) and :class:`~labkit.polyphony.models.NadeLSTM` (the keys of a frame predicted one
  after another, each conditioned on the keys already decided: RNN-NADE), both with exact NLL and sampling.
* :mod:`labkit.polyphony.train`: optax training with a jitted pure step, early stopping on ``valid``, exact
  resume from atomic checkpoints, evaluation in nats per frame.
* :mod:`labkit.polyphony.harmony` and :mod:`labkit.polyphony.harmony_model`: four-part chorales on an eighth-note
  grid, the textbook rules they are measured by (parallel fifths and octaves, crossing, ranges, bass in the key),
  and the small chorale model that harmonizes a melody (``python -m labkit harmonize``; it ships with labkit).

This file imports nothing, so ``import labkit.polyphony.data`` stays cheap.

Notebook: 08_polyphony.ipynb
"""
