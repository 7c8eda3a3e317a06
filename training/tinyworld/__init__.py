"""The tiny world: a synthetic arithmetic reasoning task that a small model learns on CPU in minutes.

It is probexit's embedded default and test bed: `problems` writes the question files, `traces` writes the
reasoning traces the policy is trained on, `tokenizer` and `policy` build and train the model, `card`
measures the trained policy through vLLM, and `build` runs it all in order, resumably.
"""
