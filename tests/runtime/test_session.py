"""masra.runtime.session: the onnxruntime session's options."""

from __future__ import annotations

import onnx
import onnx.helper as helper
import pytest

from masra.runtime.session import open_session

SPINNING = "session.intra_op.allow_spinning"


def test_a_session_can_be_told_not_to_spin_wait_between_runs(tmp_path):
    """``spinning=False`` (what the benchmarks use) makes onnxruntime's idle threads sleep; by default the
    session keeps onnxruntime's own setting (spinning), which serves a stream of queries fastest."""
    value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [value],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph), path)
    quiet = open_session(path, threads=1, spinning=False)
    assert quiet.get_session_options().get_session_config_entry(SPINNING) == "0"
    with pytest.raises(Exception, match=SPINNING):
        open_session(path, threads=1).get_session_options().get_session_config_entry(SPINNING)
