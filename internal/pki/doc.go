// Package pki generates the key material the operator needs for each lab:
//
//   - the lab's cluster CA, handed to kubeadm as /etc/kubernetes/pki/ca.{crt,key}
//     so the operator knows the CA before the cluster exists ([NewCA]);
//   - a bootstrap token and the CA discovery hash so workers can
//     `kubeadm join` ([NewBootstrapToken], [DiscoveryHash]);
//   - client certificates for the operator itself and for students, and the
//     kubeconfigs that carry them ([KeyPair.IssueClient], [Kubeconfig]);
//   - serving certificates, used to simulate a lab API server in tests
//     ([KeyPair.IssueServing]);
//   - SSH key pairs for students, and validation of keys students upload
//     ([NewSSHKeyPair], [ParseAuthorizedKey]).
//
// The package is pure: no Kubernetes API calls, no files, no clocks. Every
// function that depends on time takes a `now` or explicit validity bounds, and
// every function that needs randomness takes an io.Reader (crypto/rand.Reader in
// production; nil means crypto/rand.Reader), so tests can be deterministic.
package pki
