package ownership

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// AnnotationProof is the annotation by which labforge recognises an object it created
// when the object has lost its owner reference (a restore without them): an HMAC, keyed
// with the operator's own key (KeySecret), over what identifies the object and its
// owner (Identity). Labels prove nothing: whoever can create the object can write them.
// Its value is "v1.<owner UID>.<MAC, base64url>": the owner's UID is stated, so that the
// orphan sweep can tell which owner (by UID) an object whose owner is gone belonged to.
const AnnotationProof = "labforge.dev/proof"

// KeySecret is the Secret, in the operator's namespace, that holds the proof key under
// KeySecretKey. It is created once, when missing, with KeyBytes random bytes.
const (
	KeySecret    = "labforge-ownership-key"
	KeySecretKey = "key"
	KeyBytes     = 32
)

const proofVersion = "v1"

// Identity is what a proof binds an object to: its kind, namespace and name, and the
// owner it was created for (name, UID and, for a lab, its pool).
type Identity struct {
	Kind, Namespace, Name string
	Owner                 string
	OwnerUID              types.UID
	Pool                  string
}

// KindNamespace is the Identity kind of a lab's namespace.
const KindNamespace = "Namespace"

// LabNamespace is the identity of namespace, made for the LabEnvironment env (with
// envUID) of pool ("" for a lab of no pool).
func LabNamespace(namespace, env string, envUID types.UID, pool string) Identity {
	return Identity{Kind: KindNamespace, Name: namespace, Owner: env, OwnerUID: envUID, Pool: pool}
}

// ClaimSecret is the identity of the Secret namespace/name written for the LabClaim
// claim (with claimUID) in the same namespace.
func ClaimSecret(namespace, name, claim string, claimUID types.UID) Identity {
	return Identity{Kind: "Secret", Namespace: namespace, Name: name, Owner: claim, OwnerUID: claimUID}
}

// Prover signs and checks proofs with the operator's key. The zero value proves nothing
// and accepts no proof.
type Prover struct {
	key []byte
}

// NewProver returns a Prover keyed with key, which must hold at least KeyBytes bytes.
func NewProver(key []byte) (*Prover, error) {
	if len(key) < KeyBytes {
		return nil, fmt.Errorf("the ownership key has %d bytes, want at least %d", len(key), KeyBytes)
	}
	return &Prover{key: append([]byte(nil), key...)}, nil
}

// mac is the HMAC-SHA256 of id's fields, each length-prefixed so that no two identities
// share an input.
func (p *Prover) mac(id Identity) []byte {
	h := hmac.New(sha256.New, p.key)
	for _, f := range []string{proofVersion, id.Kind, id.Namespace, id.Name, id.Owner, string(id.OwnerUID), id.Pool} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// Proof returns the value of AnnotationProof for an object of identity id; "" from a
// Prover without a key.
func (p *Prover) Proof(id Identity) string {
	if p == nil || len(p.key) == 0 {
		return ""
	}
	return proofVersion + "." + string(id.OwnerUID) + "." + base64.RawURLEncoding.EncodeToString(p.mac(id))
}

// Proves says whether obj carries a proof made with this operator's key for identity
// id. A Prover without a key proves nothing.
func (p *Prover) Proves(obj metav1.Object, id Identity) bool {
	if p == nil || len(p.key) == 0 {
		return false
	}
	uid, sum, ok := parse(obj.GetAnnotations()[AnnotationProof])
	if !ok || uid != id.OwnerUID {
		return false
	}
	return hmac.Equal(sum, p.mac(id))
}

// OwnerUID returns the owner UID obj's proof states, if it verifies for id with that UID
// (id.OwnerUID is ignored): for an object whose owner is gone, which owner it was made for.
func (p *Prover) OwnerUID(obj metav1.Object, id Identity) (types.UID, bool) {
	uid, _, ok := parse(obj.GetAnnotations()[AnnotationProof])
	if !ok {
		return "", false
	}
	id.OwnerUID = uid
	return uid, p.Proves(obj, id)
}

func parse(v string) (types.UID, []byte, bool) {
	version, rest, ok := strings.Cut(v, ".")
	if !ok || version != proofVersion {
		return "", nil, false
	}
	i := strings.LastIndex(rest, ".")
	if i <= 0 {
		return "", nil, false
	}
	sum, err := base64.RawURLEncoding.DecodeString(rest[i+1:])
	if err != nil || len(sum) != sha256.Size {
		return "", nil, false
	}
	return types.UID(rest[:i]), sum, true
}

// LoadOrCreateKey returns the ownership key of the Secret KeySecret in namespace,
// creating the Secret with a new random key (from random, crypto/rand if nil) when it
// does not exist. c should read from the API server, not a cache. The Secret is labelled
// as labforge's and of type Opaque. The key is never logged nor written anywhere else.
//
// A Secret that exists without a usable key is an error: replacing it would orphan every
// proof made with the old key, which is the admin's decision (delete the Secret).
func LoadOrCreateKey(ctx context.Context, c client.Client, namespace string, random io.Reader) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	key := client.ObjectKey{Namespace: namespace, Name: KeySecret}
	for attempt := 0; attempt < 2; attempt++ {
		secret := &corev1.Secret{}
		err := c.Get(ctx, key, secret)
		if err == nil {
			if k := secret.Data[KeySecretKey]; len(k) >= KeyBytes {
				return k, nil
			}
			return nil, fmt.Errorf("secret %s holds no ownership key of %d bytes under %q: delete it to have a new key made (labs made with the old key are then no longer adopted)", key, KeyBytes, KeySecretKey)
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the ownership key Secret %s: %w", key, err)
		}
		k := make([]byte, KeyBytes)
		if _, err := io.ReadFull(random, k); err != nil {
			return nil, fmt.Errorf("making an ownership key: %w", err)
		}
		err = c.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: KeySecret,
				Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}},
			Type: corev1.SecretTypeOpaque,
			Data: map[string][]byte{KeySecretKey: k},
		})
		switch {
		case err == nil:
			return k, nil
		case apierrors.IsAlreadyExists(err):
			continue // another replica made it first: use theirs
		case apierrors.IsNotFound(err):
			return nil, fmt.Errorf("creating the ownership key Secret %s: the operator's namespace %s does not exist (set --operator-namespace)", key, namespace)
		default:
			return nil, fmt.Errorf("creating the ownership key Secret %s: %w", key, err)
		}
	}
	return nil, errors.New("the ownership key Secret was created and deleted meanwhile; try again")
}
