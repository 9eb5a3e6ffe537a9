//! Quorum-safe rolling-restart planner: a pure function from an observation to a decision.
