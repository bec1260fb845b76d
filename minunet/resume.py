"""What `python -m minunet.train --resume RUN` may change, and the checks before anything is written.

A resumed run keeps what makes it the same run: the network, the data and its split, the seed. It honours
what says how far and how fast to go on. Options left at their defaults keep the run's values; an option
that would change a kept value is an error rather than silently ignored.
"""
from .backends import resolve_device

# How far, how fast, how often, on what: honoured on resume, and said so in the start-up lines.
CHANGEABLE = ("steps", "lr", "momentum", "lr_decay", "weight_decay", "batch_size", "val_every", "checkpoint_every",
              "device")
# Not part of a run's configuration: where to write, the progress bar, the machine's threads.
NOT_CONFIG = ("resume", "quiet", "out", "overwrite", "threads")


def option(key):
    return "--" + key.replace("_", "-")


def resume_config(saved, given, step, run):
    """The configuration of a resumed run: the checkpoint's `saved` one with the options the user changed.

    given: {key: value} of the command line's options that differ from the parser's defaults. Returns
    (config, changes), changes a list of 'option value (was old)' texts; a ValueError for an option that a
    resume cannot change, or for a run that is already complete at `step`.
    """
    config, changes = dict(saved), []
    for key, value in given.items():
        if key in NOT_CONFIG:
            continue
        if key == "epochs":
            raise ValueError(f"--resume takes --steps, the total number of steps to reach (the run is at step "
                             f"{step}), not --epochs")
        if key == "device":
            value = resolve_device(value)
        if value == saved.get(key):
            continue
        if key not in CHANGEABLE:
            raise ValueError(f"{option(key)} {value}: the run in {run} has {saved.get(key)}; a resumed run keeps its "
                             f"network, data and seed (options other than {', '.join(map(option, CHANGEABLE))}); "
                             f"start a new run without --resume to change it")
        config[key] = value
        changes.append(f"{option(key)} {value} (was {saved.get(key)})")
    if step >= config["steps"]:
        raise ValueError(f"the run in {run} is complete: it reached step {step} of {config['steps']}; to train "
                         f"further, pass the new total, e.g. --resume {run} --steps {2 * step}")
    return config, changes
