"""When to look at the directory again, and what to look at: events, polls, or the directory's
coming and going.

:meth:`Watching.refresh` returns an :class:`Observation` (a full listing, the names that changed,
the directory gone or just found); :meth:`Watching.sleep` waits until something may have changed,
a deadline, or a stop. How (the follower's ``watch=``, see docs/checkpoints.md): ``"events"``
examines only the entries that changed, with a full listing at start, once the watch is in
place, and every minute as a safety net; ``"poll"`` lists every ``poll_interval``; remote
(fsspec) directories are always polled, backing off while nothing changes. A missing directory
is looked for again and again (locally every 0.1 s at most) and followed once it appears.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .._clock import Clock, any_stop
from .._errors import ErrorLog, LogThrottle
from .._protocols import Waitable
from .._sync import SignalSafeEvent
from ._checkpoint import Counters
from ._events import EventBackend, EventWatcher
from ._options import Watch
from ._storage import Entry, Storage, changed_names, network_filesystem

__all__ = ["Observation", "Watching", "next_poll_interval"]

logger = logging.getLogger(__name__)

# Seconds. How often a missing local directory is looked for.
_MISSING_PROBE = 0.1
# Event-driven: a full listing this often, in case the OS dropped events (queue overflow).
_EVENTS_RESCAN = 60.0


def next_poll_interval(
    current: float, *, base: float, maximum: float, changed: bool, factor: float = 2.0
) -> float:
    """Polling backs off while nothing changes (times ``factor``, up to ``maximum``) and returns
    to ``base`` as soon as something does."""
    if changed:
        return base
    return min(maximum, max(base, current * factor))


@dataclass
class Observation:
    """What one look found. ``appeared``: the directory is followed from now on (it was missing,
    or this is the first look), with ``first_listing`` taken then; ``lost``: it is gone (every
    entry counts as deleted); ``listing``: a later full listing; ``names``: entries that changed
    (from events); ``polled``: a poll (pending candidates are all worth looking at again);
    ``looked``: False when nothing was looked at (the directory is missing, or just vanished
    while polled)."""

    appeared: bool = False
    first_listing: dict[str, Entry] | None = None
    lost: bool = False
    listing: dict[str, Entry] | None = None
    names: set[str] = field(default_factory=set)
    polled: bool = False
    looked: bool = True


class Watching:
    """Looks at ``storage`` by events or polls and waits for it to change (see the module docs)."""

    def __init__(
        self,
        storage: Storage,
        *,
        watch: Watch,
        poll_interval: float,
        max_poll_interval: float,
        clock: Clock,
        stop: Waitable | None,
        counters: Counters,
        errors: ErrorLog,
        backend: EventBackend | None = None,
        poll_stop: Waitable | None = None,
    ) -> None:
        self._storage = storage
        self._watch = watch
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._clock = clock
        self._stop = stop
        self._poll_stop = stop if poll_stop is None else poll_stop
        self._counters = counters
        self._errors = errors
        self._backend = backend
        self._wake = SignalSafeEvent()
        self._watcher: EventWatcher | None = None
        self._closed = False
        self.mode = "waiting"
        self.present = False
        # True while a look finds no directory (not created yet, or gone); said once, as a warning.
        self.missing = False
        self._said_missing = False
        self._caught_up = False
        self._last_listing: dict[str, Entry] = {}
        now = clock.now()
        self._next_probe = now
        self._next_poll = now
        self._next_rescan = now
        self._interval = poll_interval
        # A listing failing at every look: the first ones in full, then a summary now and then.
        self._listing_failures = 0
        self._listing_log = LogThrottle(logger, "the directory listing", level=logging.WARNING)

    @property
    def ready(self) -> bool:
        """True once the directory is followed: present, and with events, the watch in place and
        the listing taken after it (nothing created from now on can be missed)."""
        if not self.present:
            return False
        watcher = self._watcher
        return self.mode != "events" or (watcher is not None and watcher.ready and self._caught_up)

    @property
    def stopped(self) -> bool:
        return self._closed or (self._stop is not None and self._stop.is_set())

    def refresh(self) -> Observation:
        """Look at the directory as far as is due now."""
        seen = Observation()
        now = self._clock.now()
        if not self.present:
            seen.looked = False
            if now < self._next_probe:
                return seen
            self._next_probe = now + self._probe_interval()
            if not self._storage.probe():
                self._note_missing()
                if self._storage.remote:  # back off while the prefix does not exist either
                    self._interval = next_poll_interval(
                        self._interval,
                        base=self._poll_interval,
                        maximum=self._max_poll_interval,
                        changed=False,
                    )
                return seen
            seen.looked = True
            self._start_following(seen)
            now = self._clock.now()
        if self.mode == "events":
            self._refresh_events(now, seen)
        elif now >= self._next_poll:
            changed = self._scan(seen)
            seen.looked = self.present
            if self.present:
                seen.polled = True
                self._interval = next_poll_interval(
                    self._interval,
                    base=self._poll_interval,
                    maximum=self._max_poll_interval,
                    changed=changed,
                )
                self._next_poll = self._clock.now() + self._interval
        return seen

    def _probe_interval(self) -> float:
        if self._storage.remote:
            return self._interval
        if self._poll_interval == 0 and self._watch is not Watch.POLL:
            return _MISSING_PROBE  # 0 is back to back only for polling; never a busy wait here
        return min(self._poll_interval, _MISSING_PROBE)

    def _note_missing(self) -> None:
        self.missing = True
        if not self._said_missing:  # once per follower: a typo is not waited for in silence
            self._said_missing = True
            logger.warning(
                "checkpoint directory %r does not exist yet; waiting for it to appear",
                self._storage.directory,
            )

    def _start_following(self, seen: Observation) -> None:
        directory = self._storage.directory
        if self.missing:
            logger.info("checkpoint directory %r exists now; following it", directory)
        self.missing = False
        self.present = True
        seen.appeared = True
        backend = self._backend  # the follower's choice (None: no events here)
        if self._storage.remote:
            logger.info(
                "%r is remote storage (no filesystem events): polling every %g s, backing off "
                "to %g s while nothing changes",
                directory,
                self._poll_interval,
                self._max_poll_interval,
            )
            self.mode = "remote"
        elif self._watch is Watch.POLL:
            self.mode = "poll"
        elif backend is None:
            logger.info(
                "no filesystem events on this system (pip install watchfiles): polling %r "
                "every %g s",
                directory,
                self._poll_interval,
            )
            self.mode = "poll"
        elif self._watch is Watch.AUTO and (fs := network_filesystem(directory)):
            logger.info(
                "%r is on a network filesystem (%s): polling every %g s",
                directory,
                fs,
                self._poll_interval,
            )
            self.mode = "poll"
        else:
            self.mode = "events"
            self._backend = backend
            self._start_watcher()
        self._scan(seen, first=True)
        self._next_poll = self._clock.now() + self._interval
        self._next_rescan = self._clock.now() + _EVENTS_RESCAN

    def _start_watcher(self) -> None:
        backend = self._backend
        assert backend is not None  # chosen when events were
        self._wake.clear()
        self._caught_up = False
        self._watcher = EventWatcher(
            self._storage.directory,
            wake=self._wake,
            stop=self._stop,
            errors=self._errors,
            backend=backend,
        )
        self._watcher.start()

    def _scan(self, seen: Observation, *, first: bool = False) -> bool:
        """A full listing into ``seen``; True when anything changed. Handles a vanished
        directory."""
        try:
            listing = self._storage.listdir()
        except FileNotFoundError:
            self._lost(seen)
            return True
        except OSError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            self._listing_failures += 1
            now = self._clock.now()
            self._listing_log.failed(
                self._storage.directory, exc, self._listing_failures, now, "will retry"
            )
            return False
        self._counters.add(scans=1)
        remote = self._storage.remote
        changed = bool(changed_names(self._last_listing, listing, remote=remote))
        self._last_listing = listing
        if first:
            seen.first_listing = listing
        else:
            seen.listing = listing
        return changed

    def _lost(self, seen: Observation) -> None:
        logger.warning("checkpoint directory %r is gone; waiting for it", self._storage.directory)
        self._said_missing = True  # just said
        self.present = False
        self.mode = "waiting"
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close(timeout=0)
        self._last_listing = {}
        seen.lost = True
        seen.first_listing = seen.listing = None
        seen.names.clear()
        self._next_probe = self._clock.now()

    def _refresh_events(self, now: float, seen: Observation) -> None:
        watcher = self._watcher
        assert watcher is not None
        self._wake.clear()
        names, self_changed, batches = watcher.drain()
        if batches:
            self._counters.add(change_batches=batches)
        if self_changed:  # gone, replaced, or events were lost: look at it all
            if not self._storage.probe():
                self._lost(seen)
                return
            self._next_rescan = now
        if watcher.ended and not self.stopped:
            if watcher.failed:  # logged by the watcher
                self.mode = "poll"
                self._watcher = None
                self._next_poll = now
            else:  # it ended on a stop that has since been cleared
                self._start_watcher()
                watcher = self._watcher
                assert watcher is not None
        if (watcher.ready and not self._caught_up) or now >= self._next_rescan:
            self._caught_up = watcher.ready
            self._next_rescan = now + _EVENTS_RESCAN
            self._scan(seen)
        if names and self.present:
            logger.debug("changed in %r: %s", self._storage.directory, sorted(names))
            seen.names |= names

    def sleep(self, deadline: float | None, recheck_at: float | None) -> None:
        """Wait until something may have changed, a pending checkpoint is due to be looked at
        again (``recheck_at``), the deadline, or a stop."""
        now = self._clock.now()
        wake_at = [deadline, recheck_at]
        if not self.present:
            wake_at.append(self._next_probe)
        elif self.mode == "events":
            wake_at.append(self._next_rescan)
        else:
            wake_at.append(self._next_poll)
        due = [t for t in wake_at if t is not None]
        timeout = max(0.0, min(due) - now) if due else None
        waitable: Waitable | None
        if self.mode == "events" and self._watcher is not None:
            # A fresh combination each time: the wake-up event is cleared at every look.
            waitable = any_stop(self._wake, self._stop)
        else:
            waitable = self._poll_stop if self._poll_stop is not None else self._wake
        self._clock.wait(waitable, timeout)

    def rescan_now(self) -> None:
        """Make the next :meth:`refresh` take a full listing at once, whatever the mode."""
        now = self._clock.now()
        self._next_probe = min(self._next_probe, now)
        self._next_poll = min(self._next_poll, now)
        self._next_rescan = min(self._next_rescan, now)

    def pause(self) -> None:
        """The follower is stopped: end the watcher thread (a stop cleared later starts a new
        one at the next look)."""
        watcher = self._watcher
        if watcher is not None:
            watcher.close()

    def close(self, *, wait: bool = True) -> None:
        """Stop watching; a wait in progress ends. ``wait=False`` does not wait for the watcher
        thread (from a finaliser)."""
        self._closed = True
        self._wake.set()
        self._listing_log.flush(self._storage.directory, "no longer followed")
        watcher = self._watcher
        if wait:
            self._watcher = None
        if watcher is not None:
            watcher.close(timeout=1.0 if wait else 0)

    def running_thread_names(self) -> list[str]:
        watcher = self._watcher
        return [] if watcher is None or watcher.ended else [repr(watcher)]

    def after_fork_in_child(self) -> None:
        self._listing_log.reinit_after_fork()
        if self._watcher is not None:  # its thread did not come along: start afresh
            self._watcher = None
            self.present = False
            self.mode = "waiting"
            self._wake = SignalSafeEvent()
