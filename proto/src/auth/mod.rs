//! Server-side password checks. (Being written.)
