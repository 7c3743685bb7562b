//! The Berth node agent: converges one Docker host to the pods bound to it.
