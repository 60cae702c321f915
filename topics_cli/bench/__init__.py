"""``topics bench``'s parts: the histogram (pure), the workloads (async client), the report
(pure text), and the runner that spreads a workload over generator processes."""
