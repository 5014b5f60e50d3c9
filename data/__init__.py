"""The shipped corpus, installed as the package ``labkit_data``.

Nothing to import here: ``labkit.corpus`` finds these files through
``importlib.resources`` when labkit is installed without a clone.
"""
