"""Mechanism analyses as pure functions: tensors in, JSON-able results out (no I/O, no plots).

- `alignment`: does the student's update point the same way as the teacher's (cosines, norms,
  principal angles between singular subspaces of the deltas)?
- `gradient`: the theorem on LLMs: does one imitation step on teacher data move a same-init
  student toward the teacher (cos(-grad, teacher delta) > 0)?
- `directions`: trait directions in the residual stream (mean differences) and whether the
  student's activation shift lines up with them.
- `probes`: per-layer logistic probes for the trait, trained on teacher activations.
- `detection`, `entanglement`, `shift_matrix`, `scan`: detectors of the trait in the data,
  number-token entanglement, the trait matrix's activation contrasts, the hidden-signal scan.

The analyses of a finished run (`interp.analysis`) read runs and call these.

Import the submodules directly (`from interp.mech.alignment import delta_cosines`); this
package re-exports nothing so importing it stays cheap.
"""
