-- bench/routes/broker.lua: switchyard as nothing but the embedded Kafka broker, for `bench/run --nestjs`.
-- The NestJS reference (bench/nestjs) connects to it with kafkajs. No switchyard consumer joins any group, so no
-- librdkafka consumer ever shares a group with a kafkajs one (platform-notes section 7).

kafka.topic("create_user", { partitions = 4 })
kafka.topic("get_user", { partitions = 4 })
kafka.topic("get_user.reply", { partitions = 4 })

http.static("GET", "/healthz", 200, { status = "ok" })
