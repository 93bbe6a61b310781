// Registry behaviour is covered over real gRPC in controlplane/tests/api.rs.
