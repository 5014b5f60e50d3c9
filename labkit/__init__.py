"""labkit: the tested helper package of the course "AI music composition with recurrent neural networks".

The layout, from the ground up: each module imports only modules on lower lines (``tests/test_layout.py``
checks it), so data flows one way, from MIDI files to music and reports::

    errors.py env.py _common.py  one exception family; LABKIT_FAST and versions; atomic writes, MIDI file
                                 names and finding them, pitch-class names
    examples.py                  example MIDI files that ship with labkit
    midi_io.py                   MIDI file <-> NoteSequence (a fast reader that agrees with note-seq's, note for note)
    melody.py                    the Melody type: quantize, extract, transpose, keys, phrases, notes in seconds
    encoding.py audio.py viz.py  melody <-> tokens and piano-roll frames; SoundFont rendering and WAV; piano rolls
    score.py                     staff notation: a melody -> MusicXML (music21) -> SVG (Verovio, offline)
    mix.py studio.py             voices -> one stereo mix (volume, pan, room); a light show that follows the music
    corpus/__init__.py           the shipped corpus: manifest, splits, reading tunes
    corpus/build.py              building data/ from music21's collections (a maintainer tool: make corpus)
    data.py prepare.py           cached arrays and batches; the user's own MIDI folders -> a dataset
    basics.py ngram.py           the from-scratch RNN and LSTM of notebook 03; PPM n-gram models (IDyOM)
    models/kernels.py            speed kernels: LSTM layer with a hand-written backward pass, byte dropout,
                                 inverse-CDF draws (each tested equal to the plain code; the default)
    models/melody.py             the Flax NNX melody LSTM students read, and the attention model
    checkpoint.py                checkpoints and models as plain arrays; the shipped melody model
    train.py sample.py           jitted training with early stopping and exact resume; sampling, beam search
    conditioned.py               generation to order: style, metre and key tokens, bar lines and an end
    evaluate.py generate.py      cross-entropy by tune (bits per note); melodies -> MIDI, WAV, pictures
    train_shipped.py             retrains the shipped melody model (a maintainer tool: make model)
    polyphony/                   piano rolls (data), sigmoid, NADE and MADE LSTMs (models), their training (train),
                                 four-part settings and their rules (harmony), the chorale model (harmony_model)
    style/                       features, logreg, selection, model, scoring, experiments, plots, demo
    judge.py                     generated music judged: features of tunes, two sets compared (Yang and Lerch)
    live.py personal.py          live generation in chunks steered by style; training on your own folders
    widgets.py listening.py      the sampling studio (ipywidgets 7 and 8); the listening-test panel
    app/                         the studio app (Voila): sampler, mixer, live mode, style index
    demo.py                      make demo: corpus, model, music and report
    commands/ cli.py             python -m labkit ...: the same functions, headless (commands/_args.py: the
                                 range of every numeric flag)

Glossary of names (each public name means one thing in the whole package):

* ``step``: a quantized time step; ``steps_per_quarter`` of them make a quarter note. ``event``: one
  token of an encoding. ``frame``: one piano-roll time step. ``melody``: a monophonic event sequence
  (:class:`labkit.melody.Melody`); ``sequence``: a ``note_seq.NoteSequence``. ``tune``: one item of the
  corpus; ``collection``: a source such as O'Neill's 1850 book; ``style``: a label the style model
  predicts; ``style index``: the probability of the target style. ``key``: a JAX PRNG key (the musical
  key is ``key_signature``; its tonic names are ``_common.KEY_TONIC_NAMES``).
* ``train.train_step``: the jitted optimizer step of the melody LSTM; ``basics.sgd_step``: one plain
  gradient-descent step of notebook 03's from-scratch RNN.
* ``train.evaluate_model``: a model's loss on batches; the module ``labkit.evaluate``: cross-validated
  cross-entropy of whole tunes, whose protocol is ``evaluate.cross_entropy_cv`` (bits per note, folds by
  tune); ``style.logreg.cross_validate_logreg``: cross-validated accuracy of the style classifier.
* ``checkpoint.shipped_melody_model_path`` / ``shipped_melody_model_info`` / ``load_melody_model``: the
  melody LSTM that ships with labkit; ``style.model.shipped_style_model_dir`` / ``load_style_model``: the
  shipped style model.
* ``sample.draw_token``: one token from logits (``jax.random.categorical``'s distribution);
  ``models.kernels.inverse_cdf_draw``: the faster draw it uses by default.
* ``_common.find_midi_files``: files and folders -> ``(path, problem)`` entries, one per MIDI file or
  unusable entry; ``_common.MIDI_SUFFIXES``: ``.mid``, ``.midi``, ``.kar`` everywhere.
* ``melody.as_notes``: a melody or sequence as notes in seconds (for audio and pictures).
"""
import warnings

# note_seq imports pydub, which warns at import time when ffmpeg is missing; the course never uses it.
warnings.filterwarnings("ignore", message="Couldn't find ffmpeg or avconv", category=RuntimeWarning)

from labkit.errors import LabkitError  # noqa: E402

try:  # one version number: pyproject.toml's, read from the installed package's metadata
    from importlib.metadata import PackageNotFoundError, version as _version

    __version__ = _version("labkit")
except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path without any install
    __version__ = "0+unknown"
__all__ = ["LabkitError", "__version__"]
