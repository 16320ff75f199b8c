//! Typed views of server→client messages the pooler inspects. (Being written.)
