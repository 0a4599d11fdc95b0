//! Declarative configuration (planned): decK's file format 3.0 parsed and rendered into a target state, diffed
//! against what a Kong Admin API or Konnect-mode platform API holds, and applied. Depends on `model` alone.
