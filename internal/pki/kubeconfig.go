package pki

import (
	"errors"
	"fmt"
	"net/url"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	certutil "k8s.io/client-go/util/cert"
)

// Kubeconfig returns a self-contained kubeconfig (clientcmd v1 YAML) with one
// cluster named clusterName at serverURL trusting caPEM, one user named user
// authenticating with client's certificate and key, and one context
// "<user>@<clusterName>" (kubeadm's naming) set as current-context.
//
// Everything is embedded as data rather than file paths, so the result can be
// stored in a Secret and handed to a student as a single file. caPEM is the CA
// that verifies the API server; it is not required to be client's issuer.
//
// tlsServerName, when set, is the name the client expects in the server's
// certificate (the cluster's tls-server-name) whatever serverURL's host is: a lab is
// reached at whichever node runs it, and its certificate names its Service only.
func Kubeconfig(clusterName, serverURL, tlsServerName string, caPEM []byte, user string, client *KeyPair) ([]byte, error) {
	switch {
	case clusterName == "":
		return nil, errors.New("pki: kubeconfig cluster name is empty")
	case user == "":
		return nil, errors.New("pki: kubeconfig user name is empty")
	case client == nil || client.Cert == nil || client.Key == nil:
		return nil, errors.New("pki: kubeconfig needs a client certificate and key")
	}
	if u, err := url.Parse(serverURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pki: kubeconfig server %q is not an https:// URL with a host", serverURL)
	}
	// Parse rather than just decode, so a truncated or mislabelled CA fails
	// now instead of on the student's first kubectl command.
	if _, err := certutil.ParseCertsPEM(caPEM); err != nil {
		return nil, fmt.Errorf("pki: kubeconfig CA: %w", err)
	}
	keyPEM, err := client.KeyPEM()
	if err != nil {
		return nil, err
	}

	contextName := user + "@" + clusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = &clientcmdapi.Cluster{
		Server:                   serverURL,
		TLSServerName:            tlsServerName,
		CertificateAuthorityData: caPEM,
	}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{
		ClientCertificateData: client.CertPEM(),
		ClientKeyData:         keyPEM,
	}
	cfg.Contexts[contextName] = &clientcmdapi.Context{
		Cluster:  clusterName,
		AuthInfo: user,
	}
	cfg.CurrentContext = contextName

	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding kubeconfig: %w", err)
	}
	return out, nil
}
