/*
 * The queue watcher: a librdkafka queue's io event written into an eventfd that an h2o socket watches, so that
 * delivery reports and consumed messages are served on the loop thread (platform-notes section 3). It only wakes
 * its owner up; what "serving" means (rd_kafka_poll, rd_kafka_consumer_poll) is the owner's business.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "kafka/internal.h"

static void on_readable(h2o_socket_t *sock, const char *err)
{
    sy_kafka_watch_t *watch = sock->data;
    uint64_t value;
    /* drain first: librdkafka writes again only when the queue goes from empty to non-empty, which may happen
     * while we serve it below */
    while (read(h2o_socket_get_fd(sock), &value, sizeof(value)) > 0)
        ;
    watch->on_ready(watch);
}

int sy_kafka_watch_init(sy_kafka_watch_t *watch, h2o_loop_t *loop, rd_kafka_queue_t *queue,
                        void (*on_ready)(sy_kafka_watch_t *watch), char *errbuf, size_t errbuf_size)
{
    static const uint64_t one = 1;
    int fd;

    watch->queue = queue;
    watch->on_ready = on_ready;
    watch->sock = NULL;
    if ((fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        snprintf(errbuf, errbuf_size, "kafka: eventfd: %s", strerror(errno));
        sy_kafka_watch_dispose(watch);
        return -1;
    }
    rd_kafka_queue_io_event_enable(queue, fd, &one, sizeof(one));
    watch->sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    watch->sock->data = watch;
    h2o_socket_read_start(watch->sock, on_readable);
    return 0;
}

void sy_kafka_watch_dispose(sy_kafka_watch_t *watch)
{
    /* stop librdkafka writing to the fd before the fd number can be reused */
    if (watch->queue != NULL) rd_kafka_queue_io_event_enable(watch->queue, -1, NULL, 0);
    if (watch->sock != NULL) {
        h2o_socket_read_stop(watch->sock);
        h2o_socket_close(watch->sock); /* closes the eventfd */
        watch->sock = NULL;
    }
    if (watch->queue != NULL) {
        rd_kafka_queue_destroy(watch->queue);
        watch->queue = NULL;
    }
}
