"""Checkpoint following (private; public names are re-exported from tickwork).

One job per module:

* ``_api``: ``checkpoints_iterator``, ``wait_for_new_checkpoint``, ``latest_checkpoint``.
* ``_follower``: ``CheckpointFollower``, waiting and watching.
* ``_tracker``: the model of the directory (entries, candidates, completeness).
* ``_policy``: the decisions, as pure functions.
* ``_layouts``, ``_steps``, ``_tfstate``, ``_formats``: naming, steps, TensorFlow's state file,
  file structure.
* ``_storage``, ``_watch``: local and remote storage, filesystem events.
* ``_resume``, ``_hold``, ``_counters``, ``_checkpoint``: resume file, holds, statistics, the
  ``Checkpoint`` type.
* ``_sidecar``: ``SidecarEvaluator``, its thread and lifecycle; ``_sidecar_loop``: its loop;
  ``_sidecar_state``: its counters and stop signal; ``_retry`` and ``_ending``: its decisions
  (pure functions); ``_evaluation``: ``Evaluation``, ``Outcome``, ``SidecarStats``.
"""
