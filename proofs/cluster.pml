/*
 * cluster.pml -- Spin model of keel's ClusterPool protocol between rank 0
 * and its node ranks: offer, claim, go/drop, withdraw, user cancel,
 * shutdown, terminate, a node's pool breaking.
 *
 * Code modelled: the supervisor state machine keel::cluster::Machine
 * (kernel/src/cluster/machine.hpp and machine.cpp: every event in, its
 * actions out, as one atomic step of rank 0), the driver's start slots behind
 * its Gate (driver.cpp: armed at an offer, won by a claim or by the user's
 * cancel(), taken back by a revoke), and the node agent (node_agent.cpp) as
 * the machine's contract states it: it buffers offers, claims its oldest one
 * only while a worker is free, runs what it is let run, discards what is
 * dropped or withdrawn, answers every task it runs, stops claiming once told
 * to terminate its workers, and on close answers what still runs and reports
 * closed.  Messages travel on one FIFO channel per direction and node (MPI
 * keeps order per pair), so a claim can cross a withdraw, and an answer can
 * arrive after a break resolved its task.
 * Not modelled: chunks (Gate::Start::again) and faulty nodes (both are in the
 * exhaustive explorer of the shipped machine, models/cluster/
 * cluster_machine_explore.cpp), a node's local pool (a run ends in one
 * answer, whatever its worker did: POOL-1..9 cover that), an agent that dies
 * (broken then closed unasked), the driver's refusal of late submissions,
 * capacities other than CAP, and the supervisor failing.
 *
 * Processes
 *   user     submits tasks 1..K, may cancel up to NCANCEL of its futures at
 *            any moment (cancel() fails on a final future or a started one;
 *            it wins an armed slot; a queued task is simply cancelled), then
 *            requests shutdown(wait), shutdown(cancel_futures) or terminate
 *            (and, with TERM_AFTER, may terminate after a shutdown), and
 *            waits until the cluster terminated.
 *   rank0    the driver thread: reads the nodes' messages one at a time and
 *            feeds each to the machine; the user's commands are machine
 *            events too, each one atomic step.
 *   node(n)  NN node agents of CAP workers each; up to NFAIL of them may
 *            break (say broken) at any point before they close.
 *
 * Invariants (proofs/INVARIANTS.md)
 *   CLUSTER-1  a task resolves at most once (asserted at each resolution); at
 *              the end every task resolved, every node closed.  Liveness
 *              (-DLIVENESS, pan -a -f, weak fairness):
 *              ltl cluster { <> (terminated && all_resolved) }.
 *   CLUSTER-2  go only for a task the gate started for the claiming node, at
 *              most once, never for a task whose user's cancel succeeded
 *              (asserted at go and when a node runs a task); a resolved task
 *              has no armed slot.
 *   CLUSTER-3  a node never runs more than CAP tasks (asserted at the node).
 *   CLUSTER-4  after every step of rank 0, unless terminating or broken:
 *              while a ready node has a free worker with nothing offered, no
 *              task is queued and no offer waits behind busy workers.
 *   CLUSTER-5  shutdown(cancel_futures) and terminate leave nothing queued or
 *              offered; every node closes and the cluster terminates (an
 *              invalid end state otherwise: the user waits for ever).
 *   CLUSTER-6  a break resolves every task, closes every node.
 *
 * Seeded bugs (each must be caught; proofs/spin-code-twins.md ties each to
 * the same mistake planted in machine.cpp):
 *   BUG_GO_WITHOUT_GATE        a claim is answered go without asking the gate
 *   BUG_LATE_ANSWER_RESOLVES   an answer for a task no longer running there
 *                              (resolved broken) resolves it again
 *   BUG_NO_BALANCE             no offer is moved from busy to idle nodes
 *   BUG_CANCEL_SKIPS_OFFERS    cancel_futures/terminate cancel only the queue
 *   BUG_TERMINATE_SKIPS_CLOSE  once terminating, an answer does not close
 *                              the nodes (the bug the lead fixed by hand)
 *   BUG_BREAK_KEEPS_OFFERS     a break drops offers without resolving them
 */

#ifndef K
#define K 2
#endif
#define NN 2
#ifndef CAP
#define CAP 1
#endif
#ifndef AH
#define AH 1
#endif
#ifndef NCANCEL
#define NCANCEL 1
#endif
#ifndef NFAIL
#define NFAIL 1
#endif
#ifndef TERM_AFTER
#define TERM_AFTER 1
#endif
#define MO (CAP + AH)   /* offers rank 0 lets a node hold */
#define NB 4            /* a node's offer buffer: MO plus withdrawn ones not read yet */
#define CH 8            /* channel capacity: asserted never reached */

mtype = { OPEN, OFFER, GO, DROP, WITHDRAW, TERM, CLOSE, READY, BROKEN, CLAIM, ANSWER, CLOSED };

chan down[NN] = [CH] of { mtype, byte };   /* rank 0 -> node */
chan up[NN] = [CH] of { mtype, byte };     /* node -> rank 0 */

/* ---- rank 0: the machine */
#define PRUN    0
#define PSHUT   1
#define PBROKEN 2
byte phase = PRUN;
bool terminating = false;
bool terminated = false;
byte q[K];
byte qn = 0;
#define MOPENING 0
#define MREADY   1
#define MCLOSING 2
#define MCLOSED  3
byte ms[NN];            /* rank 0's view of each node */
byte off[NN * MO];      /* offers, in the order made */
byte offn[NN];
byte runn[NN];
byte rn[K + 1];         /* n + 1 while t runs on node n (rank 0's view) */
bool termsent[NN];

/* ---- the gate and the users' futures */
#define SIDLE    0
#define SARMED   1
#define SSTARTED 2
byte slot[K + 1];
byte armon[K + 1];
bool killed[K + 1];     /* the user's cancel won the armed slot */
bool ucancel[K + 1];    /* the user's cancel succeeded */
#define ONONE 0
#define OANS  1
#define OCAN  2
#define OBRK  3
byte out[K + 1];
byte goes[K + 1];
bool cancel_all = false;  /* a cancelling shutdown took effect */
byte nfail = NFAIL;

/* scratch of one atomic step of rank 0 (dead between steps) */
hidden byte i_, j_, k_, t_, best, idle, donor, most;
hidden int bidle;
hidden byte ok, found, started, had;

inline send(n, m, t) {
    assert(len(down[n]) < CH);
    down[n]!m, t
}

inline resolve(t, o) {
    assert(out[t] == ONONE);        /* CLUSTER-1: once */
    assert(slot[t] != SARMED);      /* CLUSTER-2: no live start slot left behind */
    out[t] = o
}

inline qpop() {
    t_ = q[0];
    k_ = 0;
    do
    :: k_ + 1 < qn -> q[k_] = q[k_ + 1]; k_++
    :: else -> break
    od;
    qn--;
    q[qn] = 0
}

inline qpush_front(t) {
    k_ = qn;
    do
    :: k_ > 0 -> q[k_] = q[k_ - 1]; k_--
    :: else -> break
    od;
    q[0] = t;
    qn++
}

/* Gate::arm: false if its user cancelled it */
inline arm(t, n) {
    assert(slot[t] == SIDLE);       /* CLUSTER-2: revoked before armed again */
    if
    :: ucancel[t] -> ok = false
    :: else -> slot[t] = SARMED; armon[t] = n; killed[t] = false; ok = true
    fi
}

inline revoke(t, n) {
    assert(slot[t] == SARMED && armon[t] == n);
    slot[t] = SIDLE
}

inline offer(n, t) {
    arm(t, n);
    if
    :: ok -> off[n * MO + offn[n]] = t; offn[n]++; send(n, OFFER, t)
    :: else -> resolve(t, OCAN)
    fi
}

/* the ready node with the most free workers nothing is offered to */
inline pick() {
    best = NN;
    i_ = 0;
    do
    :: i_ < NN ->
        if
        :: ms[i_] == MREADY && offn[i_] + runn[i_] < CAP + AH &&
           (best == NN || CAP - runn[i_] - offn[i_] > bidle) ->
            best = i_;
            bidle = CAP - runn[i_] - offn[i_]
        :: else -> skip
        fi;
        i_++
    :: else -> break
    od
}

inline check_terminated() {
    if
    :: !terminated && phase != PRUN && ms[0] == MCLOSED && ms[1] == MCLOSED -> terminated = true
    :: else -> skip
    fi
}

#define nothing_left (qn == 0 && offn[0] + offn[1] + runn[0] + runn[1] == 0)

inline maybe_close() {
    if
    :: phase == PSHUT && nothing_left ->
        k_ = 0;
        do
        :: k_ < NN ->
            if
            :: ms[k_] == MOPENING || ms[k_] == MREADY -> ms[k_] = MCLOSING; send(k_, CLOSE, 0)
            :: else -> skip
            fi;
            k_++
        :: else -> break
        od;
        check_terminated()
    :: else -> skip
    fi
}

/* an offer waiting behind a busy node moves to one with a free worker */
inline balance() {
    do
    :: true ->
        idle = NN;
        i_ = 0;
        do
        :: i_ < NN ->
            if
            :: idle == NN && ms[i_] == MREADY && CAP - runn[i_] > offn[i_] -> idle = i_
            :: else -> skip
            fi;
            i_++
        :: else -> break
        od;
        if
        :: idle == NN -> break
        :: else -> skip
        fi;
        donor = NN;
        most = 0;
        i_ = 0;
        do
        :: i_ < NN ->
            if
            :: i_ != idle && offn[i_] + runn[i_] > CAP && offn[i_] + runn[i_] - CAP > most ->
                donor = i_;
                most = offn[i_] + runn[i_] - CAP
            :: else -> skip
            fi;
            i_++
        :: else -> break
        od;
        if
        :: donor == NN -> break
        :: else -> skip
        fi;
        offn[donor]--;
        t_ = off[donor * MO + offn[donor]];
        off[donor * MO + offn[donor]] = 0;
        revoke(t_, donor);
        send(donor, WITHDRAW, t_);
        offer(idle, t_)
    od
}

inline dispatch() {
    if
    :: phase == PBROKEN -> skip
    :: phase != PBROKEN && terminating ->
#ifndef BUG_TERMINATE_SKIPS_CLOSE
        maybe_close()
#else
        skip
#endif
    :: else ->
        do
        :: qn > 0 ->
            pick();
            if
            :: best == NN -> break
            :: else -> qpop(); offer(best, t_)
            fi
        :: else -> break
        od;
#ifndef BUG_NO_BALANCE
        if
        :: qn == 0 -> balance()
        :: else -> skip
        fi;
#endif
        maybe_close()
    fi
}

/* queued and offered tasks: cancelled */
inline cancel_unstarted() {
    do
    :: qn > 0 -> qpop(); resolve(t_, OCAN)
    :: else -> break
    od;
#ifndef BUG_CANCEL_SKIPS_OFFERS
    j_ = 0;
    do
    :: j_ < NN ->
        do
        :: offn[j_] > 0 ->
            offn[j_]--;
            t_ = off[j_ * MO + offn[j_]];
            off[j_ * MO + offn[j_]] = 0;
            revoke(t_, j_);
            send(j_, WITHDRAW, t_);
            resolve(t_, OCAN)
        :: else -> break
        od;
        j_++
    :: else -> break
    od
#endif
}

inline break_cluster() {
    if
    :: phase == PBROKEN -> skip
    :: else ->
        phase = PBROKEN;
        do
        :: qn > 0 -> qpop(); resolve(t_, OBRK)
        :: else -> break
        od;
        j_ = 0;
        do
        :: j_ < NN ->
            do
            :: offn[j_] > 0 ->
                offn[j_]--;
                t_ = off[j_ * MO + offn[j_]];
                off[j_ * MO + offn[j_]] = 0;
#ifndef BUG_BREAK_KEEPS_OFFERS
                revoke(t_, j_);
                resolve(t_, OBRK)
#else
                skip
#endif
            :: else -> break
            od;
            had = runn[j_] > 0;
            t_ = 1;
            do
            :: t_ <= K ->
                if
                :: rn[t_] == j_ + 1 -> rn[t_] = 0; resolve(t_, OBRK)   /* their late answers are ignored */
                :: else -> skip
                fi;
                t_++
            :: else -> break
            od;
            runn[j_] = 0;
            if
            :: ms[j_] == MOPENING || ms[j_] == MREADY ->
                if
                :: had && !termsent[j_] -> termsent[j_] = true; send(j_, TERM, 0)
                :: else -> skip
                fi;
                ms[j_] = MCLOSING;
                send(j_, CLOSE, 0)
            :: else -> skip
            fi;
            j_++
        :: else -> break
        od;
        check_terminated()
    fi
}

inline submit(t) {
    if
    :: phase == PBROKEN -> resolve(t, OBRK)
    :: phase == PSHUT -> resolve(t, OCAN)
    :: else -> q[qn] = t; qn++; dispatch()
    fi
}

inline claim(n, t) {
    if
    :: ms[n] == MCLOSED -> skip
    :: else ->
        i_ = 0;
        found = false;
        do
        :: i_ < offn[n] && off[n * MO + i_] == t -> found = true; break
        :: i_ < offn[n] && off[n * MO + i_] != t -> i_++
        :: else -> break
        od;
        if
        :: !found -> send(n, DROP, t)       /* withdrawn while the claim was on its way */
        :: else ->
            do
            :: i_ + 1 < offn[n] -> off[n * MO + i_] = off[n * MO + i_ + 1]; i_++
            :: else -> break
            od;
            offn[n]--;
            off[n * MO + offn[n]] = 0;
            if
            :: runn[n] >= CAP -> revoke(t, n); send(n, DROP, t); qpush_front(t)
            :: else ->
#ifdef BUG_GO_WITHOUT_GATE
                started = true;
#else
                /* Gate::start: the claim races the user's cancel for the slot */
                assert(slot[t] == SARMED && armon[t] == n);
                if
                :: killed[t] -> slot[t] = SIDLE; started = false
                :: else -> slot[t] = SSTARTED; started = true
                fi;
#endif
                if
                :: started ->
                    assert(goes[t] == 0 && !ucancel[t]);   /* CLUSTER-2 */
                    goes[t]++;
                    rn[t] = n + 1;
                    runn[n]++;
                    send(n, GO, t)
                :: else -> send(n, DROP, t); resolve(t, OCAN)
                fi
            fi;
            dispatch()
        fi
    fi
}

inline answer(n, t) {
    if
    :: rn[t] == n + 1 -> rn[t] = 0; runn[n]--; resolve(t, OANS); dispatch()
    :: else ->
#ifdef BUG_LATE_ANSWER_RESOLVES
        resolve(t, OANS)
#else
        skip                                 /* resolved already: the cluster broke */
#endif
    fi
}

inline node_ready(n) {
    if
    :: ms[n] == MOPENING -> ms[n] = MREADY; dispatch()
    :: else -> skip                          /* its ready crossed rank 0's close */
    fi
}

inline node_closed(n) {
    if
    :: ms[n] == MCLOSED -> skip
    :: else ->
        if
        :: ms[n] != MCLOSING -> break_cluster()
        :: else -> skip
        fi;
        ms[n] = MCLOSED;
        check_terminated()
    fi
}

inline shutdown(cf) {
    if
    :: phase == PBROKEN -> skip
    :: else ->
        if
        :: cf -> cancel_all = true; cancel_unstarted()
        :: else -> skip
        fi;
        phase = PSHUT;
        maybe_close()
    fi
}

inline terminate() {
    if
    :: phase == PBROKEN -> skip
    :: else ->
        terminating = true;
        cancel_all = true;
        cancel_unstarted();
        phase = PSHUT;
        j_ = 0;
        do
        :: j_ < NN ->
            if
            :: ms[j_] == MREADY && runn[j_] > 0 && !termsent[j_] -> termsent[j_] = true; send(j_, TERM, 0)
            :: else -> skip
            fi;
            j_++
        :: else -> break
        od;
        maybe_close()
    fi
}

/* CLUSTER-4, CLUSTER-5, CLUSTER-6: after every step of rank 0 */
inline conserve() {
    if
    :: phase != PBROKEN && !terminating ->
        i_ = 0;
        do
        :: i_ < NN ->
            if
            :: ms[i_] == MREADY && CAP - runn[i_] > offn[i_] ->
                assert(qn == 0);
                j_ = 0;
                do
                :: j_ < NN -> assert(j_ == i_ || offn[j_] + runn[j_] <= CAP); j_++
                :: else -> break
                od
            :: else -> skip
            fi;
            i_++
        :: else -> break
        od
    :: else -> skip
    fi;
    assert(!cancel_all || phase == PBROKEN || (qn == 0 && offn[0] + offn[1] == 0));
    assert(phase != PBROKEN || (nothing_left && ms[0] >= MCLOSING && ms[1] >= MCLOSING))
}

active proctype rank0() {
    mtype m;
    byte t;
end_rank0:
    do
    :: atomic { up[0]?m, t ->
        if
        :: m == READY -> node_ready(0)
        :: m == BROKEN -> break_cluster()
        :: m == CLAIM -> claim(0, t)
        :: m == ANSWER -> answer(0, t)
        :: m == CLOSED -> node_closed(0)
        fi;
        conserve();
        m = 0;
        t = 0 }
    :: atomic { up[1]?m, t ->
        if
        :: m == READY -> node_ready(1)
        :: m == BROKEN -> break_cluster()
        :: m == CLAIM -> claim(1, t)
        :: m == ANSWER -> answer(1, t)
        :: m == CLOSED -> node_closed(1)
        fi;
        conserve();
        m = 0;
        t = 0 }
    od
}

#define NUNOPENED 0
#define NOPENING  1
#define NREADY    2
#define NCLOSED   3

proctype node(byte n) {
    byte st = NUNOPENED;
    byte buf[NB];       /* offers held, oldest first */
    byte bn = 0;
    byte clm = 0;       /* bit t: claimed, go or drop not read yet */
    byte rnm = 0;       /* bit t: running */
    byte ncl = 0, nrun = 0;
    bool term = false, broke = false;
    mtype m;
    byte t, x;
    do
    :: atomic { down[n]?m, t ->
        if
        :: m == OPEN -> st = NOPENING
        :: m == OFFER -> assert(bn < NB); buf[bn] = t; bn++
        :: m == WITHDRAW ->
            x = 0;
            do
            :: x < bn && buf[x] != t -> x++
            :: x < bn && buf[x] == t ->
                do
                :: x + 1 < bn -> buf[x] = buf[x + 1]; x++
                :: else -> break
                od;
                bn--;
                buf[bn] = 0;
                break
            :: else -> break
            od
        :: m == GO ->
            if
            :: (clm >> t) & 1 ->
                clm = clm & ~(1 << t);
                ncl--;
                rnm = rnm | (1 << t);
                nrun++;
                assert(nrun <= CAP);             /* CLUSTER-3 */
                assert(!ucancel[t])              /* CLUSTER-2: a cancelled task never runs */
            :: else -> skip                      /* never claimed: not rank 0's to give */
            fi
        :: m == DROP ->
            if
            :: (clm >> t) & 1 -> clm = clm & ~(1 << t); ncl--
            :: else -> skip
            fi
        :: m == TERM -> term = true
        :: m == CLOSE ->
            /* its pool closes: what still runs is killed and answered */
            x = 1;
            do
            :: x <= K ->
                if
                :: (rnm >> x) & 1 -> up[n]!ANSWER, x
                :: else -> skip
                fi;
                x++
            :: else -> break
            od;
            rnm = 0;
            nrun = 0;
            clm = 0;
            ncl = 0;
            x = 0;
            do
            :: x < NB -> buf[x] = 0; x++
            :: else -> break
            od;
            bn = 0;
            up[n]!CLOSED, 0;
            st = NCLOSED
        fi;
        m = 0;
        t = 0;
        x = 0 }
    :: atomic { st == NOPENING && !broke -> st = NREADY; up[n]!READY, 0 }
    :: atomic { st == NREADY && !term && bn > 0 && ncl + nrun < CAP ->
        t = buf[0];
        x = 0;
        do
        :: x + 1 < bn -> buf[x] = buf[x + 1]; x++
        :: else -> break
        od;
        bn--;
        buf[bn] = 0;
        clm = clm | (1 << t);
        ncl++;
        up[n]!CLAIM, t;
        t = 0;
        x = 0 }
    :: atomic {
        if
        :: st == NREADY && (rnm >> 1) & 1 -> t = 1
        :: st == NREADY && (rnm >> 2) & 1 -> t = 2
#if K >= 3
        :: st == NREADY && (rnm >> 3) & 1 -> t = 3
#endif
        fi;
        rnm = rnm & ~(1 << t);
        nrun--;
        up[n]!ANSWER, t;
        t = 0 }
    :: atomic { nfail > 0 && !broke && (st == NOPENING || st == NREADY) ->
        nfail--;
        broke = true;
        up[n]!BROKEN, 0 }
    :: st == NCLOSED -> break
    od;
end_closed:
    do
    :: down[n]?m, t -> m = 0; t = 0      /* served its pool: hears nothing more */
    od
}

active proctype user() {
    byte t = 1, nc = NCANCEL, c;
    bool req = false, termreq = false;
    atomic {
        /* Machine::start: every node is opened */
        send(0, OPEN, 0);
        send(1, OPEN, 0);
        run node(0);
        run node(1)
    }
    do
    :: t <= K && !req -> atomic { submit(t); conserve(); t++ }
    :: nc > 0 && t > 1 ->
        atomic {    /* Future::cancel() of one of its futures */
            nc--;
            select(c : 1 .. t - 1);
            if
            :: out[c] != ONONE || slot[c] == SSTARTED || ucancel[c] -> skip   /* fails: final or running */
            :: else ->
                ucancel[c] = true;
                if
                :: slot[c] == SARMED -> killed[c] = true   /* wins the armed slot */
                :: else -> skip
                fi
            fi;
            c = 0
        }
    :: t > K && !req ->
        atomic {
            if
            :: true -> shutdown(false)
            :: true -> shutdown(true)
            :: true -> terminate(); termreq = true
            fi;
            conserve();
            req = true
        }
    :: TERM_AFTER && req && !termreq -> atomic { terminate(); conserve(); termreq = true }
    :: req -> break
    od;
    terminated;
#ifndef LIVENESS
    /* CLUSTER-1, CLUSTER-2, CLUSTER-5: every task resolved once, as it may be */
    t = 1;
    do
    :: t <= K ->
        assert(out[t] != ONONE && goes[t] <= 1);
        assert(out[t] != OANS || goes[t] == 1);
        assert(!ucancel[t] || goes[t] == 0);
        assert(cancel_all || phase == PBROKEN || ucancel[t] || out[t] == OANS);
        t++
    :: else -> break
    od;
    assert(ms[0] == MCLOSED && ms[1] == MCLOSED && runn[0] + runn[1] == 0)
#endif
}

#ifdef LIVENESS
#if K == 1
#define all_resolved (out[1] != ONONE)
#elif K == 2
#define all_resolved (out[1] != ONONE && out[2] != ONONE)
#else
#define all_resolved (out[1] != ONONE && out[2] != ONONE && out[3] != ONONE)
#endif
/* CLUSTER-1, CLUSTER-5: under weak fairness every task is resolved and
 * every node closes (terminated: rank 0 read every node's closed). */
ltl cluster { <> (terminated && all_resolved) }
#endif
