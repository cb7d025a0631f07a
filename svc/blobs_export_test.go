package svc

// StartBlobJanitor starts a janitor of incomplete uploads over cfg's
// store, as every instance of the services runs one, and returns the
// function that stops it and waits for it.
func StartBlobJanitor(cfg Config) (stop func()) {
	cfg = cfg.withDefaults()
	return startBlobJanitor(&handlers{cfg: cfg, store: cfg.Store}).stop
}
