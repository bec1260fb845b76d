"""TEMPORARY, delete at the merge of issue #15: the version tables moved to minunet/ops/launch_table.py. Kept
only for tests/test_conv_ops.py, test_conv_versions.py and minunet/bench.py until they import from there."""
from ..ops.launch_table import DEFAULT_VERSIONS, TF32_VERSIONS, VERSIONS, all_versions, split_k  # noqa: F401
