// The NestJS side of the interop test: a Kafka microservice with four @MessagePattern handlers that switchyard's
// kafka.request() calls, and a ClientKafka that sends requests to switchyard's kafka.reply() handlers.
import 'reflect-metadata';
import { Controller, Inject, Module, type INestMicroservice } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import {
  ClientKafka,
  ClientsModule,
  Ctx,
  KafkaContext,
  MessagePattern,
  Payload,
  RpcException,
  Transport,
  type MicroserviceOptions,
} from '@nestjs/microservices';
import { logLevel } from 'kafkajs';

export const SY_CLIENT = 'SY_CLIENT';
// base ids: NestJS appends "-server" (microservice) and "-client" (ClientKafka) to both client and group ids
export const SERVER_ID = 'interop-nest';
export const CLIENT_ID = 'interop-gw';
// switchyard's reply handlers this app sends requests to
export const SY_TOPICS = ['sy_user', 'sy_fail', 'sy_crash', 'sy_text', 'sy_number', 'sy_null'];

// what the NestJS handlers saw: the value after NestJS's parser and the Nest headers as NestJS decoded them
export interface Seen {
  pattern: string;
  data: unknown;
  headers: Record<string, unknown>;
}
export const seen: Seen[] = [];

function record(pattern: string, data: unknown, ctx: KafkaContext): void {
  const headers: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ctx.getMessage().headers ?? {})) {
    headers[k] = Buffer.isBuffer(v) ? v.toString() : v;
  }
  seen.push({ pattern, data, headers });
}

@Controller()
class NestHandlers {
  @MessagePattern('nest_echo')
  echo(@Payload() data: unknown, @Ctx() ctx: KafkaContext) {
    record('nest_echo', data, ctx);
    return { echoed: data, by: 'nestjs' };
  }

  @MessagePattern('nest_fail')
  fail(@Payload() data: { id: number }, @Ctx() ctx: KafkaContext) {
    record('nest_fail', data, ctx);
    throw new RpcException(`nest_fail refused ${data.id}`);
  }

  @MessagePattern('nest_number')
  number(@Payload() data: { n: number }, @Ctx() ctx: KafkaContext) {
    record('nest_number', data, ctx);
    return data.n + 1;
  }

  @MessagePattern('nest_null')
  nothing(@Payload() data: unknown, @Ctx() ctx: KafkaContext) {
    record('nest_null', data, ctx);
    return null;
  }
}

export interface NestSide {
  app: INestMicroservice;
  client: ClientKafka;
}

// Creates the microservice and the client, and waits until both have joined their consumer groups.
export async function startNest(brokers: string[], verbose: boolean): Promise<NestSide> {
  const kafkaLog = verbose ? logLevel.INFO : logLevel.ERROR;
  const common = {
    client: { brokers, logLevel: kafkaLog, retry: { retries: 5, initialRetryTime: 100 } },
    // the embedded broker answers an empty Fetch only after the full wait: keep it short
    consumer: { maxWaitTimeInMs: 10, sessionTimeout: 10000, heartbeatInterval: 1000 },
    // the topics are fresh: read from the start so nothing sent before the group's first fetch is missed
    subscribe: { fromBeginning: true },
  };

  @Module({
    imports: [
      ClientsModule.register([
        {
          name: SY_CLIENT,
          transport: Transport.KAFKA,
          options: {
            client: { ...common.client, clientId: CLIENT_ID },
            consumer: { ...common.consumer, groupId: CLIENT_ID },
            subscribe: common.subscribe,
          },
        },
      ]),
    ],
    controllers: [NestHandlers],
  })
  class InteropModule {
    constructor(@Inject(SY_CLIENT) readonly client: ClientKafka) {}
  }

  const app = await NestFactory.createMicroservice<MicroserviceOptions>(InteropModule, {
    transport: Transport.KAFKA,
    options: {
      client: { ...common.client, clientId: SERVER_ID },
      consumer: { ...common.consumer, groupId: SERVER_ID },
      subscribe: common.subscribe,
    },
    logger: verbose ? ['log', 'error', 'warn'] : ['error', 'warn'],
  });
  const client = app.get<ClientKafka>(SY_CLIENT);
  for (const t of SY_TOPICS) client.subscribeToResponseOf(t);
  // both join their groups (each join takes the embedded broker ~3 s): in parallel
  await Promise.all([app.listen(), client.connect()]);
  return { app, client };
}
