"""`python -m minunet.train` under mpiexec, with a fault injected into process 1, for tests/test_distributed.py:

    mpiexec -n 2 python tests/mpi_driver.py SCENARIO TRAIN_ARGUMENTS...

SCENARIO: replicas (after training, each process checks that its weights equal process 0's, bit for bit);
interrupt (process 1 gets SIGINT after step 2, what Ctrl-C sends); die (process 1 exits after step 2 without
a word, as a crashed process would); stall (process 1 sleeps after step 2, as a hung one would).
"""
import os
import signal
import sys
import time

import numpy as np

from minunet import distributed, train


def main():
    scenario, argv = sys.argv[1], sys.argv[2:]
    rank = distributed.launched_rank()
    train_step, run, trainers = train.Trainer.train_step, train.run, []

    def faulty_step(self):
        loss = train_step(self)
        if rank == 1 and self.step == 2:
            if scenario == "interrupt":
                os.kill(os.getpid(), signal.SIGINT)
            elif scenario == "die":
                os._exit(3)
            elif scenario == "stall":
                time.sleep(3600)
        return loss

    def kept_run(*args, **kwargs):
        trainer, code = run(*args, **kwargs)
        trainers.append(trainer)
        return trainer, code

    train.Trainer.train_step, train.run = faulty_step, kept_run
    code = train.main(argv)
    if scenario == "replicas":
        from mpi4py import MPI
        mine = np.concatenate([p.numpy().ravel() for p in trainers[0].model.parameters()])
        first = mine.copy()
        MPI.COMM_WORLD.Bcast(first, root=0)
        if mine.tobytes() != first.tobytes():
            print(f"process {rank}: weights differ from process 0's", file=sys.stderr)
            code = 4
    return code


if __name__ == "__main__":
    sys.exit(main())
