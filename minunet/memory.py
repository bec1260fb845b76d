"""Process memory tuning for the command-line tools (train, predict, bench): glibc keeps freed memory."""
import ctypes


def keep_freed_memory():
    """Ask glibc to keep freed memory for reuse rather than give it back to the OS; False where it cannot.

    A training step allocates and frees the same large arrays every time. By default glibc maps each array
    over 128 KiB (or, once freed, over the size it last saw) fresh from the OS and unmaps it when it is
    freed, so the next step page-faults every page back in: on the default small U-Net that was 20% of a
    numpy-device step (about 150 -> 120 ms, 5 alternating runs each). The price: the process keeps its peak
    memory until it exits, a peak a training or prediction run reaches on every step anyway. So the command
    line tools call this for their own process; importing minunet changes nothing.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows)
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, NEVER = -1, -3, 2**31 - 1  # from <malloc.h>
    return bool(mallopt(M_MMAP_THRESHOLD, NEVER)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER))
