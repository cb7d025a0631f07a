package subjects

// The routing service's micro names: what "nats micro ls/info/stats" shows
// for it. Its one endpoint, EndpointSend, listens on SendAll in queue group
// RouterQueue.
const (
	// RouterService is the routing service's micro name.
	RouterService = "unibus-router"
	// EndpointSend is the routing service's endpoint: every send.
	EndpointSend = "send"
)
