"""The style index: which style a melody is in, by a logistic regression on melody features.

Modules, down the pipeline (each imports only those above it):

* :mod:`labkit.style.features`: a melody's style features, tune- and phrase-level
  ("paragraph"), the feature matrix, hashed n-grams, the :class:`~labkit.style.features.Standardizer`,
  and what a trained melody LSTM hears (:func:`~labkit.style.features.melody_model_features`). Notebook 06.
* :mod:`labkit.style.logreg`: multinomial logistic regression in JAX, temperature calibration,
  metrics (confusion matrix, balanced accuracy, log loss, ECE), stratified folds by tune,
  :func:`~labkit.style.logreg.cross_validate_logreg` and :func:`~labkit.style.logreg.select_l2`. Notebook 07.
* :mod:`labkit.style.selection`: feature selection (mutual information, L1 path), the cost of
  dimensions and of training data, perturbations of melodies and features. Notebooks 06 and 07.
* :mod:`labkit.style.model`: :class:`~labkit.style.model.StyleModel`, the paper's
  :class:`~labkit.style.model.GroupEnsemble`, :class:`~labkit.style.model.Typicality`, model files
  (replaced as one unit) and the shipped model (:func:`~labkit.style.model.load_style_model`).
* :mod:`labkit.style.scoring`: melodies from the corpus and from MIDI files, scoring files
  (``python -m labkit style score``) and training the shipped model (``style train``).
* :mod:`labkit.style.experiments`: the source paper's experiments and what was tried beyond them
  (``style experiment``, ``style typicality``).
* :mod:`labkit.style.plots`: the bipolar style axis (imports matplotlib when it draws).
* :mod:`labkit.style.demo`: the demo's style stage (``make demo``).

Importing ``labkit.style`` imports none of them (nor JAX): import the module you need,
``from labkit.style.model import load_style_model``.

Notebooks: 06_style_features.ipynb, 07_style_index.ipynb, 12_style_research_appendix.ipynb
"""
