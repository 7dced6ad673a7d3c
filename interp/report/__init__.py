"""PDF reports from a run's artifacts: `doc` (the story and shared sections), `figures`,
`sections` (one per experiment kind) and `build` (`interp report`). Never recomputes a run."""
