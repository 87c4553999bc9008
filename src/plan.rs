//! The operations that turn the kernel's actual rules into the desired ones: a pure diff.
