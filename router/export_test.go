package router

// StopMembershipView stops r's membership view, as if it had lost the
// store: the router must then refuse every send (503, fail closed).
func StopMembershipView(r *Router) { r.view.Stop() }

// Visible reports whether r's membership view has pub as a member of
// roomID.
func Visible(r *Router, roomID, pub string) bool {
	_, err := r.view.Check(roomID, pub)
	return err == nil
}
