"""Variable-order n-gram models of melodies: PPM with blending, as in IDyOM.

A PPM model ("prediction by partial match", Cleary & Witten 1984) predicts the
next symbol ``e`` of a sequence from counts of what followed its *contexts*:
the last 0, 1, 2, ... symbols. Long contexts are specific but rarely seen,
short ones are common but vague, so the orders are *blended* (interpolated
smoothing, Pearce 2005, eq. 6.2; Moffat 1990 for escape method C):

.. math::

    p_k(e) = \\lambda_k \\frac{c_k(e)}{n_k} + (1 - \\lambda_k)\\, p_{k-1}(e),
    \\qquad p_{-1}(e) = \\frac{1}{|A| + 1 - |X|}

where ``c_k(e)`` counts how often ``e`` followed the order-``k`` context,
``n_k`` is the total of those counts, ``|A|`` the alphabet size and ``X`` the
symbols already predicted at a higher order (exclusion). The *escape method*
sets the weight ``lambda_k`` from the counts: with ``t_k`` distinct symbols
seen in the context and ``t1_k`` of them seen once,

==========  ===============================  ==============================
method      ``lambda_k``                     source
==========  ===============================  ==============================
``"A"``     ``n / (n + 1)``                  Cleary & Witten 1984
``"B"``     ``n' / (n' + t)``, counts - 1    Cleary & Witten 1984
``"C"``     ``n / (n + t)``                  Moffat 1990 (PPMC)
``"D"``     ``n' / (n' + t/2)``, counts - 1/2 Howard 1993
``"AX"``    ``n / (n + t1 + 1)``             Moffat et al. 1994; IDyOM's ``:x``
==========  ===============================  ==============================

Three further switches follow Pearce's IDyOM (Pearce 2005, ch. 6; Pearce & Wiggins 2004):

* ``max_order=None`` is **PPM*** (Cleary & Teahan 1997): no order bound; the
  blend starts at the *shortest deterministic* context (one whose every
  continuation so far was the same symbol) if there is one, else at the longest
  context seen before.
* ``exclusion``: a symbol predicted at a higher order is left out of the totals
  ``n_k`` of lower orders, and the result is renormalised (IDyOM's default).
* ``update_exclusion``: when a symbol is learned, its count is raised only in
  the contexts from the longest down to the first (longest) one where it had
  already been seen, not in the shorter ones (Moffat 1990). IDyOM uses it for
  the short-term model.

These reproduce IDyOM 1.5's predictive distributions (checked in
``tests/test_ngram.py`` against published regression values). ``mixtures=False``
gives classic PPM back-off instead of blending: each symbol takes its
probability from the longest context in which it has been seen.

How the counts are kept: the model stores the sequences it has learned as
one array (a *stream*, sequences separated by ``-1``) and counts by finding
where a context occurs in it. "What followed ``60 62``?" is answered by taking
every position right after a ``62``, keeping those whose symbol two back is
``60``, and counting the symbols found there; one more filter gives the next
order. No table of contexts is needed, so the order can be unbounded, and
learning a sequence is an append.

IDyOM's long-term and short-term models (Pearce 2005, sec. 6.2.4):

* **LTM**: trained on a corpus, then fixed.
* **LTM+**: the LTM keeps learning each test melody as it reads it (every
  note is predicted *before* it is learned).
* **STM**: a fresh model for each melody that learns only that melody, note by note.
* **BOTH / BOTH+**: LTM (or LTM+) and STM distributions combined by
  :func:`combine` (weighted geometric mean, weights from entropy).

References:
    J. G. Cleary and I. H. Witten, "Data compression using adaptive coding and
    partial string matching", IEEE Trans. Communications 32(4), 1984.
    A. Moffat, "Implementing the PPM data compression scheme", IEEE Trans.
    Communications 38(11), 1990.
    J. G. Cleary and W. J. Teahan, "Unbounded length contexts for PPM",
    The Computer Journal 40(2/3), 1997.
    M. T. Pearce, *The construction and evaluation of statistical models of
    melodic structure in music perception and composition*, PhD thesis,
    City University London, 2005 (IDyOM).
    M. T. Pearce, D. Conklin and G. A. Wiggins, "Methods for combining
    statistical models of music", CMMR 2004, LNCS 3310, 2005.

Notebook: 04_lstm_melody_model.ipynb

Example:
    >>> m = PPM(alphabet_size=4, max_order=2).fit([[0, 1, 2, 3] * 5])
    >>> round(float(m.distribution([0, 1])[2]), 2)    # after 0 1 came 2, five times
    0.79
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from labkit.errors import ConfigError, EncodingError

#: Escape methods and the amount added to every positive count before blending.
ESCAPE_METHODS = {"A": 0.0, "B": -1.0, "C": 0.0, "D": -0.5, "AX": 0.0}
#: IDyOM's model configurations (see :class:`IdyomModel`).
IDYOM_MODELS = ("ltm", "ltm+", "stm", "both", "both+")
_SEPARATOR = -1


class _Growable:
    """A 1-D numpy array that can be appended to in amortised O(1)."""

    def __init__(self, dtype, capacity: int = 256):
        self._data = np.empty(capacity, dtype=dtype)
        self.size = 0

    def _reserve(self, extra: int) -> None:
        need = self.size + extra
        if need > len(self._data):
            data = np.empty(max(need, 2 * len(self._data)), dtype=self._data.dtype)
            data[:self.size] = self._data[:self.size]
            self._data = data

    def append(self, value) -> None:
        self._reserve(1)
        self._data[self.size] = value
        self.size += 1

    def extend(self, values: np.ndarray) -> None:
        self._reserve(len(values))
        self._data[self.size:self.size + len(values)] = values
        self.size += len(values)

    @property
    def view(self) -> np.ndarray:
        return self._data[:self.size]


def _as_symbols(sequence, alphabet_size: int) -> np.ndarray:
    """``sequence`` as an int64 array, checked to lie in ``0..alphabet_size-1``."""
    x = np.asarray(sequence)
    if x.ndim != 1 or not (x.size == 0 or np.issubdtype(x.dtype, np.integer)):
        raise EncodingError(f"a sequence must be a 1-D array of integer symbols, got shape {x.shape} "
                            f"and dtype {x.dtype}")
    x = x.astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= alphabet_size):
        bad = x[(x < 0) | (x >= alphabet_size)][0]
        raise EncodingError(f"symbol {int(bad)} is outside the alphabet 0..{alphabet_size - 1}")
    return x


class PPM:
    """A PPM model over the symbols ``0..alphabet_size-1`` (see the module docstring).

    Args:
        alphabet_size: number of symbols ``|A|`` (128 for MIDI pitches).
        max_order: longest context used (``k`` symbols); ``None`` for PPM*
            (unbounded, shortest-deterministic selection).
        escape: ``"A"``, ``"B"``, ``"C"``, ``"D"`` or ``"AX"``.
        exclusion: leave symbols predicted at higher orders out of lower-order totals.
        update_exclusion: raise counts only down to the longest context that had seen the symbol.
        mixtures: blend all orders (True, IDyOM) or back off (False, classic PPM).
        shortest_deterministic: start the blend at the shortest deterministic
            context; default ``max_order is None`` (PPM*).

    Methods: :meth:`fit` (forget, then learn sequences), :meth:`update` (learn one more
    sequence), :meth:`distribution` (of the next symbol after a context),
    :meth:`distributions`, :meth:`log2_probs` and :meth:`bits` of a whole sequence.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> m = PPM(alphabet_size=3, max_order=1, escape="C").fit([[0, 1, 0, 1, 0, 1]])
        >>> np.round(m.distribution([0]), 3).tolist()   # after 0 came 1, three times
        [0.167, 0.792, 0.042]
    """

    def __init__(self, alphabet_size: int, max_order: int | None = 5, *, escape: str = "C",
                 exclusion: bool = True, update_exclusion: bool = False, mixtures: bool = True,
                 shortest_deterministic: bool | None = None):
        if not isinstance(alphabet_size, (int, np.integer)) or alphabet_size < 1:
            raise ConfigError(f"alphabet_size must be a positive integer, got {alphabet_size!r}")
        if max_order is not None and (not isinstance(max_order, (int, np.integer)) or max_order < 0):
            raise ConfigError(f"max_order must be an integer >= 0 or None (unbounded), got {max_order!r}")
        escape = str(escape).upper()
        if escape not in ESCAPE_METHODS:
            raise ConfigError(f"escape method {escape!r} is not one of {', '.join(ESCAPE_METHODS)}")
        self.alphabet_size = int(alphabet_size)
        self.max_order = None if max_order is None else int(max_order)
        self.escape = escape
        self.exclusion = bool(exclusion)
        self.update_exclusion = bool(update_exclusion)
        self.mixtures = bool(mixtures)
        self.shortest_deterministic = (self.max_order is None if shortest_deterministic is None
                                       else bool(shortest_deterministic))
        self.reset()

    def __repr__(self) -> str:
        order = "*" if self.max_order is None else self.max_order
        return (f"PPM(alphabet_size={self.alphabet_size}, order={order}, escape={self.escape!r}, "
                f"exclusion={self.exclusion}, update_exclusion={self.update_exclusion}, "
                f"symbols learned={self.num_symbols})")

    # --- learning -----------------------------------------------------------------
    def reset(self) -> "PPM":
        """Forget everything learned."""
        a = self.alphabet_size
        self._stream = _Growable(np.int32)      # symbols, sequences separated by -1
        self._min_order = _Growable(np.int32)   # per position: lowest order its update reached
        self._where = [_Growable(np.int64, 16) for _ in range(a)]   # positions of each symbol
        self._order0 = np.zeros(a, dtype=np.int64)          # order-0 counts
        self._order0_upex = np.zeros(a, dtype=np.int64)     # the same, with update exclusion
        self._open = False                      # is a sequence being learned symbol by symbol?
        self._append(_SEPARATOR, 0)
        return self

    @property
    def num_symbols(self) -> int:
        """How many symbols the model has learned."""
        return int(self._order0.sum())

    def _append(self, symbol: int, min_order: int) -> None:
        if symbol >= 0:
            self._where[symbol].append(self._stream.size)
            self._order0[symbol] += 1
            if min_order == 0:
                self._order0_upex[symbol] += 1
        self._stream.append(symbol)
        self._min_order.append(min_order)

    def _learn(self, context: np.ndarray, symbol: int, counts=None) -> None:
        """Learn ``symbol`` after ``context`` (the symbols before it in the open sequence).

        ``counts``: :meth:`_order_counts` of ``context`` if already computed.
        """
        min_order = 0
        if self.update_exclusion:
            # the longest order at which this n-gram had been seen: counts below it are not raised
            if counts is None:
                counts = self._order_counts(context)
            for order, (full, _) in enumerate(counts):
                if full[symbol] > 0:
                    min_order = order
        self._append(int(symbol), min_order)
        self._open = True

    def _close(self) -> None:
        if self._open:
            self._append(_SEPARATOR, 0)
            self._open = False

    def update(self, sequence) -> "PPM":
        """Learn one more sequence (an int array of symbols); returns the model.

        Example:
            >>> PPM(4).update([0, 1, 2]).num_symbols
            3
        """
        x = _as_symbols(sequence, self.alphabet_size)
        self._close()
        if not self.update_exclusion:   # every count is raised: a plain append
            if x.size:
                start = self._stream.size
                for s in np.unique(x):
                    self._where[s].extend(start + np.flatnonzero(x == s))
                np.add.at(self._order0, x, 1)
                np.add.at(self._order0_upex, x, 1)
                self._stream.extend(x.astype(np.int32))
                self._min_order.extend(np.zeros(x.size, np.int32))
                self._append(_SEPARATOR, 0)
            return self
        for i in range(x.size):
            self._learn(x[:i], x[i])
        self._close()
        return self

    def fit(self, sequences: Iterable) -> "PPM":
        """Forget everything, then learn ``sequences`` (each an int array); returns the model."""
        self.reset()
        for sequence in sequences:
            self.update(sequence)
        return self

    # --- counting -----------------------------------------------------------------
    def _order_counts(self, context: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(counts, counts with update exclusion)`` for orders 0, 1, ... of ``context``.

        Element ``k`` holds int arrays ``[alphabet_size]``: how often each symbol followed
        the last ``k`` symbols of ``context``. The list stops at the first order whose
        context was never followed by anything (or at ``max_order``).
        """
        if self._order0.sum() == 0:
            return []
        out = [(self._order0, self._order0_upex)]
        bound = len(context) if self.max_order is None else min(self.max_order, len(context))
        if bound == 0:
            return out
        stream, min_order = self._stream.view, self._min_order.view
        # positions right after an occurrence of the last context symbol ...
        after = self._where[int(context[-1])].view + 1
        after = after[after < stream.size]
        after = after[stream[after] >= 0]             # ... that are not the end of a sequence
        order = 1
        while after.size:
            nxt = stream[after]
            full = np.bincount(nxt, minlength=self.alphabet_size)
            if self.update_exclusion:
                upex = np.bincount(nxt[min_order[after] <= order], minlength=self.alphabet_size)
            else:
                upex = full
            out.append((full, upex))
            if order == bound:
                break
            order += 1
            # the stream starts with a separator, so after - order never goes below 0
            after = after[stream[after - order] == context[-order]]
        return out

    def _weight(self, counts: np.ndarray, excluded: np.ndarray) -> tuple[np.ndarray, float]:
        """Blending weights of one order: ``(lambda * c / n for every symbol, lambda)``."""
        seen = counts > 0
        distinct = int(np.count_nonzero(seen))
        c = counts.astype(np.float64)
        shift = ESCAPE_METHODS[self.escape]
        if shift:
            c = np.where(seen, np.maximum(c + shift, 0.0), 0.0)
        n = float(c[~excluded].sum()) if self.exclusion else float(c.sum())
        if n <= 0:
            return np.zeros_like(c), 0.0
        escape = {"A": 1.0, "B": distinct, "C": distinct, "D": distinct / 2.0,
                  "AX": np.count_nonzero(counts == 1) + 1.0}[self.escape]
        lam = n / (n + escape)
        return lam * c / n, lam

    def _blend(self, counts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        a = self.alphabet_size
        longest = len(counts) - 1
        chosen, deterministic = longest, False
        if self.shortest_deterministic:
            for order, (full, _) in enumerate(counts):
                if np.count_nonzero(full) == 1:
                    if order < longest:
                        chosen, deterministic = order, True
                    break
        probs = np.zeros(a)
        excluded = np.zeros(a, dtype=bool)
        weight = 1.0                       # product of the escapes (1 - lambda) of higher orders
        for order in range(chosen, -1, -1):
            full, upex = counts[order]
            # IDyOM: the selected deterministic context uses its full counts
            c = upex if self.update_exclusion and not (deterministic and order == chosen) else full
            if self.mixtures:
                alphas, lam = self._weight(c, excluded)
            else:                          # back-off: only symbols not predicted higher up
                c = np.where(excluded, 0, c)
                alphas, lam = self._weight(c, np.zeros(a, dtype=bool))
            probs += weight * alphas
            weight *= 1.0 - lam
            if self.exclusion or not self.mixtures:
                excluded |= alphas > 0
        if self.mixtures:
            probs += weight / (a + 1 - np.count_nonzero(excluded))
        else:
            rest = ~excluded
            probs[rest] += weight / max(np.count_nonzero(rest), 1)
        return probs / probs.sum()

    # --- predicting ---------------------------------------------------------------
    def distribution(self, context) -> np.ndarray:
        """Probabilities (float64 ``[alphabet_size]``, summing to 1) of the symbol after ``context``.

        ``context`` is the sequence so far (any length; only the last ``max_order``
        symbols are used). An empty context gives the order-0 distribution
        blended with the uniform one.

        Example:
            >>> PPM(2).fit([[0, 0, 0]]).distribution([]).round(3).tolist()
            [0.875, 0.125]
        """
        context = _as_symbols(context, self.alphabet_size)
        return self._blend(self._order_counts(context))

    def distributions(self, sequence, *, learn: bool = False) -> np.ndarray:
        """The predictive distribution before each symbol of ``sequence``: float64 ``[T, alphabet_size]``.

        Row ``i`` is ``p(. | sequence[:i])``: the first symbol is predicted from the
        order-0 (and uniform) distribution. With ``learn=True`` each symbol is learned
        right after it was predicted, so the model reads the sequence as a listener
        would (IDyOM's LTM+ and STM); afterwards it has learned the whole sequence.
        """
        x = _as_symbols(sequence, self.alphabet_size)
        out = np.empty((x.size, self.alphabet_size))
        self._close()
        for i in range(x.size):
            counts = self._order_counts(x[:i])
            out[i] = self._blend(counts)
            if learn:
                self._learn(x[:i], x[i], counts)
        self._close()
        return out

    def log2_probs(self, sequence, *, learn: bool = False) -> np.ndarray:
        """``log2 p(x_i | x_<i)`` of each symbol: float64 ``[T]``, all <= 0 (see :meth:`distributions`)."""
        x = _as_symbols(sequence, self.alphabet_size)
        dist = self.distributions(x, learn=learn)
        return np.log2(dist[np.arange(x.size), x])

    def bits(self, sequence, *, learn: bool = False) -> np.ndarray:
        """Information content ``-log2 p`` of each symbol, in bits: float64 ``[T]``, all >= 0.

        Its mean is the cross-entropy of the sequence under the model.

        Example:
            >>> b = PPM(2).fit([[0, 1] * 20]).bits([0, 1, 0, 1])
            >>> bool(b[-1] < 0.1)
            True
        """
        return -self.log2_probs(sequence, learn=learn)


# =====================================================================================
# Combining models (IDyOM's LTM + STM)
# =====================================================================================

def entropy_bits(distributions: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each distribution along the last axis: ``[...]``.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> float(entropy_bits(np.full(8, 1 / 8)))
        3.0
    """
    p = np.asarray(distributions, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=-1)


def combine(distributions: Sequence[np.ndarray], method: str = "geometric", bias: float = 7.0) -> np.ndarray:
    """Combine the predictions of several models, trusting the more certain one more.

    Each model ``m`` gets the weight ``w_m = (H_m / H_max) ** -bias``, where ``H_m``
    is the entropy of its distribution and ``H_max = log2 |A|`` (Pearce, Conklin
    & Wiggins 2005; IDyOM's defaults are geometric with bias 7 for LTM + STM):

    * ``"arithmetic"``: ``p(e) = sum_m w_m p_m(e) / sum_m w_m``
    * ``"geometric"``:  ``p(e) = (1/Z) prod_m p_m(e) ** (w_m / sum_m w_m)``

    ``bias=0`` weighs all models equally.

    Args:
        distributions: arrays of the same shape ``[..., |A|]`` (e.g. ``[T, |A|]``), each summing to 1.

    Returns:
        float64 array of that shape, each distribution summing to 1.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> sure, unsure = np.array([0.9, 0.05, 0.05]), np.full(3, 1 / 3)
        >>> bool(combine([sure, unsure])[0] > combine([sure, unsure], bias=0)[0])
        True
    """
    if method not in ("geometric", "arithmetic"):
        raise ConfigError(f"combination method must be 'geometric' or 'arithmetic', got {method!r}")
    if not distributions:
        raise ConfigError("combine needs at least one distribution")
    ps = np.stack([np.asarray(d, dtype=np.float64) for d in distributions])    # [M, ..., A]
    size = ps.shape[-1]
    h_max = np.log2(size) if size > 1 else 1.0
    relative = np.maximum(entropy_bits(ps) / h_max, 1e-12)                      # [M, ...]
    weights = relative ** (-float(bias))
    weights = (weights / weights.sum(axis=0, keepdims=True))[..., None]         # [M, ..., 1]
    if method == "arithmetic":
        out = (weights * ps).sum(axis=0)
    else:
        log_p = np.log(np.maximum(ps, 1e-300))
        log_out = (weights * log_p).sum(axis=0)
        out = np.exp(log_out - log_out.max(axis=-1, keepdims=True))
    return out / out.sum(axis=-1, keepdims=True)


class IdyomModel:
    """IDyOM's long-term / short-term model configurations over one alphabet.

    ``models`` is one of :data:`IDYOM_MODELS`:

    * ``"ltm"``: a :class:`PPM` trained by :meth:`fit`, fixed while predicting.
    * ``"ltm+"``: the same, but it learns each melody it predicts, note by note
      (and keeps what it learned for the next melody).
    * ``"stm"``: a fresh PPM for each melody, learning it note by note.
    * ``"both"`` / ``"both+"``: LTM (or LTM+) and STM combined by :func:`combine`.

    Defaults are IDyOM's: both models PPM* (``max_order=None``) with exclusion; the
    LTM uses escape C without update exclusion, the STM escape AX with update
    exclusion; geometric combination with bias 7.

    Notebook: 04_lstm_melody_model.ipynb

    Example:
        >>> m = IdyomModel(4, models="both+").fit([[0, 1, 2, 3] * 4])
        >>> m.bits([0, 1, 2, 3]).shape
        (4,)
    """

    def __init__(self, alphabet_size: int, models: str = "both+", *, max_order: int | None = None,
                 ltm_escape: str = "C", stm_escape: str = "AX", ltm_update_exclusion: bool = False,
                 stm_update_exclusion: bool = True, stm_max_order: int | None = None,
                 combination: str = "geometric", bias: float = 7.0):
        if models not in IDYOM_MODELS:
            raise ConfigError(f"models must be one of {', '.join(IDYOM_MODELS)}, got {models!r}")
        self.alphabet_size = int(alphabet_size)
        self.models = models
        self.combination, self.bias = combination, float(bias)
        self.ltm = PPM(alphabet_size, max_order, escape=ltm_escape, update_exclusion=ltm_update_exclusion)
        self._stm_args = dict(alphabet_size=alphabet_size, max_order=stm_max_order, escape=stm_escape,
                              update_exclusion=stm_update_exclusion)
        if combination not in ("geometric", "arithmetic"):
            raise ConfigError(f"combination must be 'geometric' or 'arithmetic', got {combination!r}")

    def __repr__(self) -> str:
        return f"IdyomModel({self.models!r}, ltm={self.ltm!r})"

    def fit(self, sequences: Iterable) -> "IdyomModel":
        """Train the long-term model on ``sequences`` (from scratch); returns the model."""
        self.ltm.fit(sequences)
        return self

    def update(self, sequence) -> "IdyomModel":
        """Let the long-term model learn one more sequence."""
        self.ltm.update(sequence)
        return self

    def distributions(self, sequence) -> np.ndarray:
        """Predictive distributions ``[T, alphabet_size]`` of a melody, read note by note.

        ``"ltm+"``/``"both+"`` leave the melody learned by the long-term model.
        """
        parts = self.component_distributions(sequence)
        if len(parts) == 1:
            return parts[0]
        return combine(parts, self.combination, self.bias)

    def component_distributions(self, sequence) -> list[np.ndarray]:
        """The distributions ``[T, alphabet_size]`` of each model before they are combined.

        ``[ltm]``, ``[stm]`` or ``[ltm, stm]``, read note by note as :meth:`distributions`
        does (and with the same side effect: ``"ltm+"``/``"both+"`` learn the melody).
        Use it to combine the n-gram models with another model's predictions.
        """
        parts = []
        if self.models != "stm":
            parts.append(self.ltm.distributions(sequence, learn=self.models.endswith("+")))
        if self.models in ("stm", "both", "both+"):
            parts.append(PPM(**self._stm_args).distributions(sequence, learn=True))
        return parts

    def log2_probs(self, sequence) -> np.ndarray:
        """``log2 p`` of each symbol: float64 ``[T]`` (<= 0)."""
        x = _as_symbols(sequence, self.alphabet_size)
        return np.log2(self.distributions(x)[np.arange(x.size), x])

    def bits(self, sequence) -> np.ndarray:
        """Information content of each symbol in bits: float64 ``[T]`` (>= 0)."""
        return -self.log2_probs(sequence)
