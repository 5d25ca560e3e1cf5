package gateway

import "sync"

// frameQueue holds a session's answers (acks, errors, pongs, presence
// events) until the writer takes them: at most max, in order. A channel
// of that capacity costs its buffer for the life of the connection (1.6
// KB for 64 frames, the largest item of an idle connection's heap);
// the queue holds nothing while empty, which is nearly always.
type frameQueue struct {
	mu     sync.Mutex
	frames [][]byte
	max    int
	ready  chan struct{} // one token: frames are waiting (the writer's wakeup)
	room   chan struct{} // one token: a take made room (a waiting push's wakeup)
}

func newFrameQueue(max int) *frameQueue {
	return &frameQueue{max: max, ready: make(chan struct{}, 1), room: make(chan struct{}, 1)}
}

// push queues f. When the queue is full it waits for room if wait is
// set, until quit closes (false); without wait it gives up at once.
func (q *frameQueue) push(f []byte, wait bool, quit <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if len(q.frames) < q.max {
			q.frames = append(q.frames, f)
			q.mu.Unlock()
			select {
			case q.ready <- struct{}{}:
			default:
			}
			return true
		}
		q.mu.Unlock()
		if !wait {
			return false
		}
		select {
		case <-q.room:
		case <-quit:
			return false
		}
	}
}

// take returns every queued frame, oldest first, and empties the queue.
func (q *frameQueue) take() [][]byte {
	q.mu.Lock()
	fs := q.frames
	q.frames = nil
	q.mu.Unlock()
	if len(fs) > 0 {
		select {
		case q.room <- struct{}{}:
		default:
		}
	}
	return fs
}

func (q *frameQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.frames)
}
