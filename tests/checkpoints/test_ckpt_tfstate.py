"""Reading TensorFlow's `checkpoint` state file without TensorFlow."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickwork._checkpoints._tfstate import (
    StateFileError,
    TFCheckpointState,
    parse_checkpoint_state,
    resolve_prefix,
)


class TestParse:
    def test_what_checkpoint_manager_writes(self) -> None:
        """The usual file: the latest path, all paths in order, timestamps."""
        text = (
            'model_checkpoint_path: "ckpt-3"\n'
            'all_model_checkpoint_paths: "ckpt-1"\n'
            'all_model_checkpoint_paths: "ckpt-2"\n'
            'all_model_checkpoint_paths: "ckpt-3"\n'
            "all_model_checkpoint_timestamps: 1700000000.5\n"
            "all_model_checkpoint_timestamps: 1700000001\n"
            "all_model_checkpoint_timestamps: 1.7e9\n"
            "last_preserved_timestamp: 1699999990.25\n"
        )
        assert parse_checkpoint_state(text) == TFCheckpointState(
            "ckpt-3",
            ("ckpt-1", "ckpt-2", "ckpt-3"),
            (1700000000.5, 1700000001.0, 1.7e9),
            1699999990.25,
        )

    def test_escapes_quotes_comments_and_lists(self) -> None:
        """C escapes (octal UTF-8 bytes too), single quotes, joined strings, # comments and
        the list form of repeated fields are read as text_format reads them."""
        text = (
            "# written by hand\n"
            'model_checkpoint_path: \'a\\\\b \\"q\\" \\303\\251\' "-x"  # trailing comment\n'
            "all_model_checkpoint_paths: [\"p1\", 'p2'];\n"
            "all_model_checkpoint_paths: '\\x41\\n\\t'\n"
        )
        state = parse_checkpoint_state(text)
        assert state.model_checkpoint_path == 'a\\b "q" é-x'
        assert state.all_model_checkpoint_paths == ("p1", "p2", "A\n\t")

    def test_last_model_path_wins(self) -> None:
        """Like text_format.Merge, a repeated singular field keeps its last value."""
        assert (
            parse_checkpoint_state(
                'model_checkpoint_path: "a" model_checkpoint_path: "b"'
            ).model_checkpoint_path
            == "b"
        )

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("", "no model_checkpoint_path"),
            ('model_checkpoint_path: ""', "no model_checkpoint_path"),
            ('model_checkpoint_path: "x"\nbogus: 1', "no field named 'bogus'"),
            ('model_checkpoint_path "x"', "expected ':'"),
            ('model_checkpoint_path: "x', "not closed"),
            ("model_checkpoint_path: x", "expected a quoted string"),
            ('model_checkpoint_path: "\\q"', "unknown escape"),
            ('model_checkpoint_path: "\\377"', "not valid UTF-8"),
            ('model_checkpoint_path: "a"\nlast_preserved_timestamp: "x"', "expected a number"),
            ('model_checkpoint_path: "a"\nall_model_checkpoint_paths: ["a" "b"', "expected ','"),
        ],
    )
    def test_refuses_what_tensorflow_refuses(self, text: str, message: str) -> None:
        """A corrupt state file raises StateFileError saying where and why."""
        with pytest.raises(StateFileError, match=message):
            parse_checkpoint_state(text)

    def test_error_names_the_line(self) -> None:
        """Errors point at the line and column."""
        with pytest.raises(StateFileError, match="line 2, column 1"):
            parse_checkpoint_state('model_checkpoint_path: "a"\nnope: 1')


class TestResolve:
    def test_relative_paths_are_joined_like_tensorflow(self) -> None:
        """os.path.join with the directory as given; absolute paths are kept."""
        assert resolve_prefix("runs/a", "ckpt-1", remote=False) == os.path.join("runs/a", "ckpt-1")
        assert resolve_prefix("runs/a/", "ckpt-1", remote=False) == "runs/a/ckpt-1"
        assert resolve_prefix("runs/a", "/abs/ckpt-1", remote=False) == "/abs/ckpt-1"

    def test_remote_paths(self) -> None:
        """Remote directories join with '/', and recorded URLs count as absolute."""
        assert resolve_prefix("s3://b/run", "ckpt-1", remote=True) == "s3://b/run/ckpt-1"
        assert resolve_prefix("s3://b/run", "gs://x/ckpt-1", remote=True) == "gs://x/ckpt-1"


_paths = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=40,
)


@pytest.mark.tensorflow
@settings(max_examples=200, deadline=None)
@given(
    model=_paths,
    others=st.lists(_paths, max_size=5),
    stamps=st.lists(st.floats(min_value=0, max_value=2e9), max_size=4),
    as_utf8=st.booleans(),
)
def test_round_trip_with_protobuf(
    model: str, others: list[str], stamps: list[float], as_utf8: bool
) -> None:
    """Whatever protobuf's text_format writes for a CheckpointState, the parser reads back."""
    from google.protobuf import text_format
    from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

    proto = CheckpointState(
        model_checkpoint_path=model,
        all_model_checkpoint_paths=others,
        all_model_checkpoint_timestamps=stamps,
    )
    text = text_format.MessageToString(proto, as_utf8=as_utf8)
    state = parse_checkpoint_state(text)
    assert state.model_checkpoint_path == model
    assert state.all_model_checkpoint_paths == tuple(others)
    assert state.all_model_checkpoint_timestamps == pytest.approx(tuple(stamps))
