"""`charlm`: character-level language models (LSTM, TCN, Transformer) with prompted samples.

Modules, one job each: `params` (the `Params` dataclass), `presets` (named bundles of defaults),
`data` (corpus loading, vocabulary, batches, validation windows), `models` (the three networks),
`sampling` (prompted generation and the sample files), `workload` (`CharLM`, the protocol class).
"""
