//! Typed views of the client→server messages the pooler inspects. (Being written.)
