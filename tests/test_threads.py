"""--threads: the default BLAS thread count and the checks of the option."""
import pytest

from minunet import threads


@pytest.fixture
def no_thread_variables(monkeypatch):
    for name in threads.ENV_NAMES + threads.LOCAL_PROCESS_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_leaves_a_core_to_the_rest_of_the_machine(no_thread_variables, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.default_threads() == 7 and threads.resolve_threads(None) == 7
    assert threads.describe(7, given=False) == "BLAS threads 7 (default: 8 usable cores minus one, at least 1)"
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    assert threads.default_threads() == 1


def test_a_thread_variable_of_the_environment_is_the_default(no_thread_variables, monkeypatch):
    # Set by the user: it stands even for processes an MPI launcher started.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    assert threads.describe(3, given=False) == "BLAS threads 3 (default: OMP_NUM_THREADS=3)"
    assert threads.describe(1, given=True) == "BLAS threads 1 (--threads)"


def test_the_limit_holds_inside_the_block_only():
    before = threads.blas_threads_now()
    with threads.blas_threads(1):
        assert set(threads.blas_threads_now()) == {1}
    assert threads.blas_threads_now() == before


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_bad_counts_are_one_line_errors(bad):
    with pytest.raises(ValueError, match="--threads must be an int >= 1"):
        threads.resolve_threads(bad)
