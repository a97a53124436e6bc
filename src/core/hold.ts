// Holding a TCP socket's reads in the kernel: while a socket is held, nothing more is read
// into this process (the bytes stay in the kernel's receive queue, for a process the socket
// is handed to, or unread on purpose), until resumeReading(). `pause()` alone only stops
// 'data' events: net goes on reading into the socket's buffer. The handle's own read state
// is a Node internal: internals.ts holds it, with pause() as the public fallback.

export { holdReads as stopReading, releaseReads as resumeReading } from './internals.js';
