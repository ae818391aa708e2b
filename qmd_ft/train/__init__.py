"""Training planned once, for `qmd-ft train` and `qmd-ft pipeline` alike.

`plan`: which stages run, their resolved configs and `TrainRequest`s, the data plan and the
one-line description of a stage. `checks`: everything that can fail without training, for every
planned stage before the first one starts. `run`: the planned stages -> artifacts, each checked
finite, and the summary line.
"""
