//! The desired IPVS rules: a pure function of Services, EndpointSlices, node addresses and flags.
