"""The controller's store: versioned keys holding JSON documents; SQLite embedded, or etcd for a cluster."""
