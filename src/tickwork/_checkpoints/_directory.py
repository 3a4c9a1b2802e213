"""What is in a checkpoint directory: its entries, grouped into candidate checkpoints.

:class:`Directory` is fed a full listing (:meth:`~Directory.apply_listing`) or the names that
changed (:meth:`~Directory.apply_changes`, which stats each of them once), claims entries for
candidates through the layout's scheme (detecting the layout from the first entries that
identify one), reads TensorFlow's state file, and returns what changed as an :class:`Update`
for the next steps of the route (completeness, order). It neither assesses nor waits.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .._errors import ErrorLog
from ._checkpoint import Checkpoint, Counters
from ._layouts import (
    CheckpointPattern,
    Claim,
    Kind,
    Layout,
    Scheme,
    SortKey,
    detect_scheme,
    scheme_for,
    sort_key,
)
from ._storage import Entry, NotARegularFile, Storage, changed_names
from ._tfstate import StateFileError, TFNames

__all__ = ["Candidate", "Directory", "Update"]

logger = logging.getLogger(__name__)

# How many keys of removed checkpoints are remembered, so that a deletion is counted once however
# many events name it.
_REMOVED_KEPT = 4096


@dataclass(eq=False)
class Candidate:
    """One checkpoint as far as the directory shows it: its key (name), step, sort order and
    the entries that make it up (what completeness and order know of it is kept by them)."""

    key: str
    step: int | None
    order: SortKey
    members: dict[str, Claim] = field(default_factory=dict)


@dataclass
class Update:
    """What one change to the directory did. ``added``/``removed``: candidates that appeared or
    lost their last entry (``removed`` with whether its deletion was counted already);
    ``touched``: candidates whose entries changed (worth assessing again once assessed);
    ``shrunk``: candidates that lost an entry (to assess again in any case); ``written``: keys
    seen fully written before their deletion began; ``named``: keys the state file newly names;
    ``named_newest``: the state file names a newer checkpoint than before."""

    added: list[Candidate] = field(default_factory=list)
    removed: list[tuple[Candidate, bool]] = field(default_factory=list)
    touched: set[str] = field(default_factory=set)
    shrunk: set[str] = field(default_factory=set)
    written: set[str] = field(default_factory=set)
    named: set[str] = field(default_factory=set)
    named_newest: SortKey | None = None


class Directory:
    """The entries and candidates of one checkpoint directory (see the module docs)."""

    def __init__(
        self,
        storage: Storage,
        *,
        layout: Layout | CheckpointPattern,
        state_filename: str,
        skip_to_latest: bool,
        floor: SortKey | None,
        counters: Counters,
        errors: ErrorLog,
    ) -> None:
        self.storage = storage
        self.state_filename = state_filename
        self._marker_required = storage.protocol in ("gs", "gcs")
        self.scheme: Scheme | None = None
        if layout is not Layout.AUTO:
            self.scheme = scheme_for(
                layout, state_filename=state_filename, commit_marker_required=self._marker_required
            )
        self._skip_to_latest = skip_to_latest
        self._floor = floor
        self._counters = counters
        self._errors = errors
        self.entries: dict[str, Entry] = {}
        self.candidates: dict[str, Candidate] = {}
        self.every: list[tuple[SortKey, str]] = []  # every candidate, ascending
        self.tf_names = TFNames()
        self._fresh: dict[str, Entry] = {}  # entries stat'ed in this round
        self._member_of: dict[str, str] = {}
        self._removed: dict[str, None] = {}  # keys of removed checkpoints (insertion order)
        self._state_dirty = False
        self.eager = False  # set once following has started (see start_eager)
        self._state_rejected: str | None = None  # why the state file was last refused
        self._warned: set[str] = set()  # names logged as not followed (bounded by _REMOVED_KEPT)
        self._out = Update()

    # -- feeding ----------------------------------------------------------------------------------

    def start_eager(self) -> None:
        """From now on, changed candidates are assessed at once and deletions seen in events are
        counted (what was there at start is assessed lazily, when order reaches it)."""
        self.eager = True

    def new_round(self) -> None:
        """Forget the entries stat'ed in the last round (they may be stale now)."""
        self._fresh.clear()

    def apply_listing(self, listing: Mapping[str, Entry]) -> Update:
        """Bring the model in line with a full listing."""
        changed = changed_names(self.entries, listing, remote=self.storage.remote)
        if self.scheme is not None and self.scheme.kind is Kind.TENSORFLOW:
            self._state_dirty = self._state_dirty or self.state_filename in listing
        return self._apply({name: listing.get(name) for name in changed})

    def apply_changes(self, names: Iterable[str]) -> Update:
        """Look at the entries ``names`` again (they changed): one stat each."""
        updates = {name: self.storage.stat(name) for name in set(names)}
        self._fresh.update((name, entry) for name, entry in updates.items() if entry is not None)
        return self._apply(updates)

    def forget(self, keys: Iterable[str]) -> Update:
        """The candidates ``keys`` were found deleted while being assessed."""
        return self._apply(dict.fromkeys(keys))

    def reset(self) -> Update:
        """The directory is gone: every entry counts as deleted."""
        return self._apply(dict.fromkeys(self.entries))

    def refine(self, scheme: Scheme) -> None:
        """A candidate's contents showed the layout more precisely than the names did (a
        torch.distributed.checkpoint directory named as Orbax names its own): use ``scheme``,
        which claims the same names, from now on."""
        if self.scheme is not None and self.scheme.layout != scheme.layout:
            logger.info(
                "checkpoint layout of %r: %s (from a checkpoint's contents)",
                self.storage.directory,
                scheme.layout,
            )
        self.scheme = scheme

    def entry_for(self, key: str) -> Entry | None:
        """The entry of ``key`` when it is known fresh (remote: the last listing, which is
        re-taken every poll; locally: stat'ed in this round), else None (stat it)."""
        if self.storage.remote:
            return self.entries.get(key)
        return self._fresh.get(key)

    def read_state_if_changed(self) -> Update:
        """Read TensorFlow's state file when a change to it was seen."""
        if not self._state_dirty:
            return Update()
        self._state_dirty = False
        out = Update()
        before = self.tf_names.max_named
        try:
            raw = self.storage.read_bytes(self.state_filename)
            if raw is None:
                return out
            changed = self.tf_names.update(raw, self.storage.directory, remote=self.storage.remote)
        except (StateFileError, UnicodeDecodeError, NotARegularFile) as exc:
            if str(exc) != self._state_rejected:  # once per reason, not at every look
                self._state_rejected = str(exc)
                self._counters.add(rejected=1)
                logger.warning(
                    "ignoring the unreadable state file %r: %s",
                    self.storage.join(self.state_filename),
                    exc,
                    exc_info=True,
                )
            return out
        except OSError as exc:
            self._error(exc, self.state_filename)
            return out
        self._state_rejected = None
        if changed is None:
            return out
        for recorded in sorted(self.tf_names.outside - self._warned):
            self._warned.add(recorded)
            logger.warning(
                "the state file %r names %r, outside the directory: not a checkpoint of it",
                self.storage.join(self.state_filename),
                recorded,
            )
        out.named = {key for key in changed if key in self.candidates}
        newest = self.tf_names.max_named
        if newest is not None and newest != before:
            out.named_newest = newest
        return out

    def _error(self, exc: OSError, what: str) -> None:
        self._errors.record(exc)
        self._counters.add(errors=1)
        logger.warning(
            "error examining %r in %r; will look again: %s",
            what,
            self.storage.directory,
            exc,
            exc_info=True,
        )

    def _apply(self, updates: Mapping[str, Entry | None]) -> Update:
        self._out = out = Update()
        for name, entry in updates.items():
            if entry is None:
                self.entries.pop(name, None)
            else:
                self.entries[name] = entry
        if self.scheme is None:
            self.scheme = detect_scheme(
                ((n, e.is_dir) for n, e in updates.items() if e is not None),
                state_filename=self.state_filename,
                commit_marker_required=self._marker_required,
            )
            if self.scheme is None:
                return out
            logger.info("checkpoint layout of %r: %s", self.storage.directory, self.scheme.layout)
            # Claim everything seen before the layout was known, and what just vanished.
            updates = {**self.entries, **updates}
        for name, entry in updates.items():
            self._touch(self.scheme, name, entry)
        return out

    def _touch(self, scheme: Scheme, name: str, entry: Entry | None) -> None:
        if scheme.kind is Kind.TENSORFLOW and name == self.state_filename:
            self._state_dirty = True
            return
        known = self._member_of.get(name)
        claim = None if entry is None else scheme.claim(name, entry.is_dir)
        if claim is None and entry is not None and scheme.kind is Kind.TENSORFLOW:
            self._unclaimed(name)
        if known is not None and (claim is None or claim.key != known):
            self._drop_member(name, known)
        if entry is None and known is None and self.eager:
            self._ephemeral(scheme, name)
        if claim is None:
            return
        candidate = self.candidates.get(claim.key)
        if candidate is None:
            candidate = Candidate(claim.key, claim.step, sort_key(claim.step, claim.key))
            self.candidates[claim.key] = candidate
            bisect.insort(self.every, (candidate.order, candidate.key))
            self._out.added.append(candidate)
        candidate.members[name] = claim
        self._member_of[name] = claim.key
        self._out.touched.add(claim.key)

    def _unclaimed(self, name: str) -> None:
        """A TensorFlow-looking file no rule claims (a prefix with a line break, say) is
        logged once: it is not followed, and the user should know."""
        looks_tf = ".index" in name or ".data-" in name
        if looks_tf and name not in self._warned and len(self._warned) < _REMOVED_KEPT:
            self._warned.add(name)
            logger.warning(
                "%r in %r looks like a TensorFlow checkpoint file but is not followed (its "
                "prefix is not a plain name)",
                name,
                self.storage.directory,
            )

    def _ephemeral(self, scheme: Scheme, name: str) -> None:
        """An event named a checkpoint that was deleted before it could be looked at (saved and
        removed by max_to_keep between two looks): it is counted, once, like any deletion."""
        claim = scheme.claim(name, False) or scheme.claim(name, True)
        if claim is None or claim.role == "data":
            return
        if claim.key in self.candidates:  # its index came and went: it is being deleted
            if claim.key not in self._removed:
                self._out.written.add(claim.key)
            return
        order = sort_key(claim.step, claim.key)
        if (self._floor is not None and order <= self._floor) or claim.key in self._removed:
            return
        self._remember_removed(claim.key)
        newer = bool(self.every) and self.every[-1][0] > order
        if self._skip_to_latest and newer:
            self._counters.add(skipped=1)
            return
        self._counters.add(deleted_before_reached=1)
        logger.warning(
            "checkpoint %r (step %s) was deleted before it could be examined",
            self.storage.join(claim.key),
            claim.step,
        )

    def _remember_removed(self, key: str) -> None:
        self._removed[key] = None
        if len(self._removed) > _REMOVED_KEPT:
            del self._removed[next(iter(self._removed))]

    def _drop_member(self, name: str, key: str) -> None:
        self._member_of.pop(name, None)
        candidate = self.candidates.get(key)
        if candidate is None:
            return
        candidate.members.pop(name, None)
        if candidate.members:
            self._out.shrunk.add(key)
            return
        del self.candidates[key]
        del self.every[bisect.bisect_left(self.every, (candidate.order, key))]
        counted = key in self._removed  # its deletion was counted when its index vanished
        self._remember_removed(key)  # later events naming it are not a new deletion
        self._out.touched.discard(key)
        self._out.shrunk.discard(key)
        self._out.removed.append((candidate, counted))

    # -- handing out ------------------------------------------------------------------------------

    def checkpoint(self, candidate: Candidate) -> Checkpoint:
        """The :class:`Checkpoint` a candidate is handed out as."""
        scheme = self.scheme
        assert scheme is not None
        join = self.storage.join
        if scheme.kind is Kind.TENSORFLOW:
            path = self.tf_names.named.get(candidate.key) or join(candidate.key)
            roles = candidate.members
            files = [join(n) for n in sorted(roles, key=lambda n: (roles[n].role != "index", n))]
        else:
            path = join(candidate.key)
            files = [path]
        return Checkpoint(path, step=candidate.step, layout=scheme.layout, files=files)
