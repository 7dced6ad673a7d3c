"""The analyses of a finished subliminal run (`interp analyze`): one module per analysis, each
declaring its unit (`unit.Analysis`: why it may not run, the packages it imports, compute, its
part of the PDF), found by name through `interp.registry`; `reader.AnalysisRun`, the one reader
of a run they share; `run`, the driver. The math they call lives in `interp.mech`.
"""
