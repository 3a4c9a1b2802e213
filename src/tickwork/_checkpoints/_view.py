"""DirectoryView: keeps a Tracker up to date with a directory, and waits for it to change.

How it watches (the follower's ``watch=``):

``"events"``
    A local directory watched through watchfiles (inotify, FSEvents, ...). Only the entries that
    changed are examined, so the cost of noticing a checkpoint does not grow with the number
    already there. A full listing is taken at start, once the watch is in place, and every
    minute as a safety net (an event queue can overflow).
``"poll"``
    The directory is listed every ``poll_interval`` seconds: what network filesystems need
    (inotify does not see other machines' writes to NFS). ``"auto"`` picks it for network
    filesystems and when watchfiles is not installed.
remote (fsspec URLs)
    Always polled, with backoff while nothing changes (``poll_interval`` doubling up to
    ``max_poll_interval``), listing caches bypassed.

A missing directory is looked for again and again (locally every 0.1 s at most) and followed
once it appears; one that disappears is waited for again. Every wait is on the tickwork clock
and ends as soon as the stop signal is set.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable

from .._clock import Clock, Waitable
from .._errors import ErrorLog
from ._counters import Counters
from ._policy import next_poll_interval
from ._storage import Storage, network_filesystem
from ._tracker import Tracker
from ._watch import EventWatcher, watchfiles_available

__all__ = ["DirectoryView", "Watch"]

logger = logging.getLogger(__name__)

# Seconds. How often a missing local directory is looked for.
_MISSING_PROBE = 0.1
# Event-driven: a full listing this often, in case the OS dropped events (queue overflow).
_EVENTS_RESCAN = 60.0


class Watch(str, enum.Enum):
    """How a local directory is watched (see the module docs)."""

    AUTO = "auto"
    EVENTS = "events"
    POLL = "poll"


class DirectoryView:
    """Feeds ``tracker`` from ``storage`` by events or polls; see the module docs."""

    def __init__(
        self,
        storage: Storage,
        tracker: Tracker,
        *,
        watch: Watch,
        poll_interval: float,
        max_poll_interval: float,
        clock: Clock,
        stop: Waitable | None,
        counters: Counters,
        errors: ErrorLog,
        on_present: Callable[[], None],
    ) -> None:
        self._storage = storage
        self._tracker = tracker
        self._watch = watch
        self._poll_interval = poll_interval
        self._max_poll_interval = max_poll_interval
        self._clock = clock
        self._stop = stop
        self._counters = counters
        self._errors = errors
        self._on_present = on_present
        self._wake = threading.Event()
        self._watcher: EventWatcher | None = None
        self._closed = False
        self.mode = "waiting"
        self.present = False
        self._caught_up = False
        now = clock.now()
        self._next_probe = now
        self._next_poll = now
        self._next_rescan = now
        self._interval = poll_interval

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

    def refresh(self) -> None:
        """Bring the tracker up to date with the directory."""
        now = self._clock.now()
        if not self.present:
            if now < self._next_probe:
                return
            self._next_probe = now + self._probe_interval()
            if not self._storage.probe():
                if self._storage.remote:  # back off while the prefix does not exist either
                    self._interval = next_poll_interval(
                        self._interval,
                        base=self._poll_interval,
                        maximum=self._max_poll_interval,
                        changed=False,
                    )
                return
            self._start_following()
            now = self._clock.now()
        if self.mode == "events":
            self._refresh_events(now)
        elif now >= self._next_poll:
            changed = self._scan()
            if self.present:
                self._tracker.process(recheck_pending=True)
                self._interval = next_poll_interval(
                    self._interval,
                    base=self._poll_interval,
                    maximum=self._max_poll_interval,
                    changed=changed,
                )
                self._next_poll = self._clock.now() + self._interval
            return
        self._tracker.process()

    def _probe_interval(self) -> float:
        if self._storage.remote:
            return self._interval
        return min(self._poll_interval, _MISSING_PROBE)

    def _start_following(self) -> None:
        self.present = True
        self._on_present()
        if self._storage.remote:
            self.mode = "remote"
        elif self._watch is Watch.POLL:
            self.mode = "poll"
        elif self._watch is Watch.AUTO and not watchfiles_available():
            logger.info(
                "watchfiles is not installed: polling %r every %g s (pip install "
                "'tickwork[watch]' for event-driven following)",
                self._storage.directory,
                self._poll_interval,
            )
            self.mode = "poll"
        elif self._watch is Watch.AUTO and (fs := network_filesystem(self._storage.directory)):
            logger.info(
                "%r is on a network filesystem (%s): polling every %g s",
                self._storage.directory,
                fs,
                self._poll_interval,
            )
            self.mode = "poll"
        else:
            self.mode = "events"
            self._start_watcher()
        self._scan()
        self._tracker.start_eager()
        self._next_poll = self._clock.now() + self._interval
        self._next_rescan = self._clock.now() + _EVENTS_RESCAN

    def _start_watcher(self) -> None:
        self._wake.clear()
        self._caught_up = False
        self._watcher = EventWatcher(
            self._storage.directory, wake=self._wake, stop=self._stop, errors=self._errors
        )
        self._watcher.start()

    def _scan(self) -> bool:
        """A full listing; True when anything changed. Handles a vanished directory."""
        try:
            listing = self._storage.listdir()
        except FileNotFoundError:
            self._lost()
            return True
        except OSError as exc:
            self._errors.record(exc)
            self._counters.add(errors=1)
            logger.warning("listing %r failed; will retry", self._storage.directory, exc_info=True)
            return False
        self._counters.add(scans=1)
        return self._tracker.apply_listing(listing)

    def _lost(self) -> None:
        logger.warning("checkpoint directory %r is gone; waiting for it", self._storage.directory)
        self.present = False
        self.mode = "waiting"
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close(timeout=0)
        self._tracker.reset()
        self._next_probe = self._clock.now()

    def _refresh_events(self, now: float) -> None:
        watcher = self._watcher
        assert watcher is not None
        self._wake.clear()
        names, self_changed, batches = watcher.drain()
        if batches:
            self._counters.add(change_batches=batches)
        if self_changed and not self._storage.probe():
            self._lost()
            return
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
            self._scan()
        if names and self.present:
            logger.debug("changed in %r: %s", self._storage.directory, sorted(names))
            self._tracker.apply_changes(names)

    def sleep(self, deadline: float | None) -> None:
        """Wait until something may have changed, the deadline, or a stop."""
        now = self._clock.now()
        wake_at = [deadline]
        if not self.present:
            wake_at.append(self._next_probe)
        elif self.mode == "events":
            wake_at.append(self._next_rescan)
        else:
            wake_at.append(self._next_poll)
        wake_at.append(self._tracker.next_recheck())
        due = [t for t in wake_at if t is not None]
        timeout = max(0.0, min(due) - now) if due else None
        if self.mode == "events" and self._watcher is not None:
            waitable: Waitable = self._wake
        else:
            waitable = self._stop if self._stop is not None else self._wake
        self._clock.wait(waitable, timeout)

    def rescan_now(self) -> None:
        """Make the next :meth:`refresh` take a full listing at once, whatever the mode (a
        consumer about to stop wants every checkpoint written so far, events in flight included).
        """
        now = self._clock.now()
        self._next_probe = min(self._next_probe, now)
        self._next_poll = min(self._next_poll, now)
        self._next_rescan = min(self._next_rescan, now)

    def close(self) -> None:
        """Stop watching; a wait in progress ends."""
        self._closed = True
        self._wake.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.close()

    def abandon(self) -> None:
        """Stop the watcher without waiting for it (from a finaliser)."""
        self._closed = True
        watcher = self._watcher
        if watcher is not None:
            watcher.close(timeout=0)

    def running_thread_names(self) -> list[str]:
        watcher = self._watcher
        return [] if watcher is None or watcher.ended else [repr(watcher)]

    def after_fork_in_child(self) -> None:
        if self._watcher is not None:  # its thread did not come along: start afresh
            self._watcher = None
            self.present = False
            self.mode = "waiting"
            self._wake = threading.Event()
