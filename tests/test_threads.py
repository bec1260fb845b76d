"""--threads: the default thread count, the checks of the option, and the numpy device's thread pool."""
import numpy as np
import pytest

from minunet import threads


@pytest.fixture
def no_thread_variables(monkeypatch):
    for name in threads.ENV_NAMES + threads.LOCAL_PROCESS_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_leaves_a_core_to_the_rest_of_the_machine(no_thread_variables, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)
    assert threads.default_threads() == 7 and threads.resolve_threads(None) == 7
    assert threads.describe(7, given=False) == "threads 7 (default: 8 usable cores minus one, at least 1)"
    monkeypatch.setattr(threads, "usable_cores", lambda: 1)
    assert threads.default_threads() == 1


def test_a_thread_variable_of_the_environment_is_the_default(no_thread_variables, monkeypatch):
    # Set by the user: it stands even for processes an MPI launcher started.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3
    assert threads.describe(3, given=False) == "threads 3 (default: OMP_NUM_THREADS=3)"
    assert threads.describe(1, given=True) == "threads 1 (--threads)"


def test_the_limit_holds_inside_the_block_only():
    before = threads.blas_threads_now()
    with threads.blas_threads(1):
        assert set(threads.blas_threads_now()) == {1}
    assert threads.blas_threads_now() == before


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_bad_counts_are_one_line_errors(bad):
    with pytest.raises(ValueError, match="--threads must be an int >= 1"):
        threads.resolve_threads(bad)


def test_cpu_threads_set_the_pool_and_one_blas_thread_inside_the_block_only():
    before = (threads.cpu_threads_now(), threads.blas_threads_now())
    with threads.cpu_threads(2):
        assert threads.cpu_threads_now() == 2 and set(threads.blas_threads_now()) == {1}
    assert (threads.cpu_threads_now(), threads.blas_threads_now()) == before


def test_parallel_runs_every_task_once_on_the_threads_and_raises_their_errors():
    import threading
    ran, names = [], set()

    def task(i):
        ran.append(i)
        names.add(threading.current_thread().name)
        if i == 0:  # the first task waits until another thread has run one: both threads take part
            for _ in range(10_000):
                if len(ran) > 1:
                    break
                threading.Event().wait(1e-4)
    with threads.cpu_threads(2):
        threads.parallel(task, 50)
    assert sorted(ran) == list(range(50)) and len(names) == 2

    def failing(i):
        if i == 7:
            raise ValueError("task 7")
    with threads.cpu_threads(2), pytest.raises(ValueError, match="task 7"):
        threads.parallel(failing, 20)
    seen = []
    threads.slices(lambda s: seen.append((s.start, s.stop)), 10)
    assert seen == [(0, 10)]  # one thread: one slice
    seen = []
    with threads.cpu_threads(2):
        threads.slices(lambda s: seen.append((s.start, s.stop)), 3 * threads.SLICE_ELEMENTS + 5)
    seen.sort()
    assert seen[0][0] == 0 and seen[-1][1] == 3 * threads.SLICE_ELEMENTS + 5 and len(seen) == 4
    assert all(a[1] == b[0] for a, b in zip(seen, seen[1:]))  # consecutive, no gap, no overlap


def test_copy_writes_every_element_of_a_window_on_the_threads():
    src = np.arange(3 * 5 * 130 * 140, dtype=np.float32).reshape(3, 5, 130, 140)
    dst = np.full((3, 8, 132, 141), np.nan, np.float32)
    with threads.cpu_threads(2):
        threads.copy(dst[:, 2:7, 1:131, :140], src)
    assert np.array_equal(dst[:, 2:7, 1:131, :140], src)
    assert np.isnan(dst[:, :2]).all() and np.isnan(dst[:, 7:]).all() and np.isnan(dst[:, :, 0]).all()
