//go:build unix

package redistest

import "syscall"

// Pause stops the server's process without ending it (SIGSTOP): its connections stay open,
// and it answers nothing until Resume, as a server stalled by a slow disk or a paused VM.
func (s *Server) Pause() {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.cmd.Process.Signal(syscall.SIGSTOP)
	s.p.t.Cleanup(func() { s.p.cmd.Process.Signal(syscall.SIGCONT) })
}

// Resume continues a paused server.
func (s *Server) Resume() {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	s.p.cmd.Process.Signal(syscall.SIGCONT)
}
