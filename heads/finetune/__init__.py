"""Fine-tuning: the last blocks of a backbone trained end to end with a linear classifier, which can start
from a head trained on cached features (its standardisation folded in).

`model`: the network and what of it trains (blocks unfrozen, parameter groups, layer decay).
`distributed`: this process's place in a torchrun job. `checkpoint`: whole-state checkpoints, RNG included,
so a resumed run takes the steps an unbroken one would. `loop`: the training loop, evaluation, bench mode.
"""
