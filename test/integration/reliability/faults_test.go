package reliability_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/labforge/labforge/test/integration"
)

// leaderOf returns which of the processes holds the leader election Lease, by its log.
func leaderOf(procs ...*integration.OperatorProcess) func() int {
	return func() int {
		for i, p := range procs {
			log, _ := os.ReadFile(p.LogPath)
			if !p.Exited() && strings.Contains(string(log), "Successfully acquired lease") {
				return i
			}
		}
		return -1
	}
}

var _ = Describe("Two operators with leader election, the leader killed in the middle of a burst", func() {
	It("serve every claim once: the standby takes over, no lab is bound twice", func(ctx context.Context) {
		rounds := 1
		if long {
			rounds = 3
		}
		Expect(k8s.Create(ctx, integration.MakeTemplate("leader").Workers(0).Obj())).To(Succeed())
		const warm, burst = 30, 20
		Expect(k8s.Create(ctx, integration.MakePool("leader", "leader").Replicas(warm).MaxLabs(1000).MaxBooting(10).Obj())).To(Succeed())
		bindings := watchBindings(ctx)
		args := []string{"--leader-elect", "--leader-election-namespace", "kube-system"}
		procs := []*integration.OperatorProcess{startOperator("operator-a.log", args...), startOperator("operator-b.log", args...)}

		for round := range rounds {
			By(fmt.Sprintf("round %d: a burst of %d claims on a warm pool", round+1, burst))
			Eventually(leaderOf(procs...)).WithTimeout(time.Minute).ShouldNot(Equal(-1))
			Eventually(poolStatus(ctx, "leader")).WithTimeout(3 * time.Minute).Should(HaveField("ReadyReplicas", int32(warm)))
			ns := fmt.Sprintf("leader-round-%d", round)
			createNamespace(ctx, ns)
			createBurst(ctx, ns, "leader", burst)

			By("killing the leader once a few claims are served")
			Eventually(readyClaims(ctx, ns)).WithPolling(5 * time.Millisecond).Should(BeNumerically(">=", 3))
			leader := leaderOf(procs...)()
			Expect(leader).NotTo(Equal(-1))
			procs[leader].Kill()
			// The killed operator comes back as the standby, as a restarted pod would.
			procs[leader] = startOperator(fmt.Sprintf("operator-%d-restarted.log", round), args...)

			By("the standby taking over and serving the rest")
			Eventually(readyClaims(ctx, ns)).WithTimeout(2 * time.Minute).Should(Equal(burst))
			expectEveryClaimHoldsItsOwnLab(ctx, ns, burst)
		}
		Expect(bindings.rebound()).To(BeEmpty())
	})
})

var _ = Describe("The API server restarted in the middle of a burst", func() {
	It("costs the operator nothing: every claim is served once and the pool refills", func(ctx context.Context) {
		restarts := 1
		if long {
			restarts = 3
		}
		Expect(k8s.Create(ctx, integration.MakeTemplate("restart").Workers(0).Obj())).To(Succeed())
		const warm, burst = 20, 20
		Expect(k8s.Create(ctx, integration.MakePool("restart", "restart").Replicas(warm).MaxLabs(1000).MaxBooting(10).Obj())).To(Succeed())
		bindings := watchBindings(ctx)
		operator := startOperator("operator.log")
		Eventually(poolStatus(ctx, "restart")).WithTimeout(3 * time.Minute).Should(HaveField("ReadyReplicas", int32(warm)))

		createNamespace(ctx, "apiserver-restart")
		createBurst(ctx, "apiserver-restart", "restart", burst)
		for i := range restarts {
			Eventually(readyClaims(ctx, "apiserver-restart")).WithPolling(5 * time.Millisecond).Should(BeNumerically(">=", 3*(i+1)))
			By(fmt.Sprintf("restarting kube-apiserver (%d of %d)", i+1, restarts))
			Expect(cp.RestartAPIServer(ctx)).To(Succeed())
		}
		Eventually(readyClaims(ctx, "apiserver-restart")).WithTimeout(2 * time.Minute).Should(Equal(burst))
		expectEveryClaimHoldsItsOwnLab(ctx, "apiserver-restart", burst)
		Eventually(poolStatus(ctx, "restart")).WithTimeout(2 * time.Minute).Should(And(
			HaveField("ReadyReplicas", int32(warm)), HaveField("BoundReplicas", int32(burst))))
		Expect(bindings.rebound()).To(BeEmpty())
		Expect(operator.Exited()).To(BeFalse(), "the operator exited when its API server went away")
	})
})
