"""The recipe planner of ``simclr pretrain --recipe auto``: a recipe fitted to the data, the device and the
time budget from measured trial steps (:mod:`simclr.planner.plan`), by rules that are pure functions of what
was measured (:mod:`simclr.planner.choose`)."""
