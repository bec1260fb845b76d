"""TEMPORARY, delete at the merge of issue #15: the dropout hash moved to minunet/ops/elementwise.py. Kept only
for tests/test_misc_ops.py until it imports from there."""
from ..ops.elementwise import hash32, hash_uniform  # noqa: F401
