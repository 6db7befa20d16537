// The NestJS reference of `bench/run --nestjs`: the classic tutorial's API gateway and auth microservice, as small
// as NestJS allows, so that the benchmark measures the framework and kafkajs rather than application code.
//
//   node dist/main.js gateway --brokers HOST:PORT --port 3000   HTTP: POST /auth/sign-up, GET /users/:id
//   node dist/main.js auth    --brokers HOST:PORT               Kafka: create_user (event), get_user (request-reply)
//
// The gateway does what switchyard's routes.lua does in its two routes:
//   POST /auth/sign-up  validates CreateUserDto (class-validator, whitelist), emits create_user and answers 202 once
//                       the broker acknowledged it (like kafka.emit's default wait = true);
//   GET /users/:id      ClientKafka.send('get_user', {userId}) and answers the reply (404 for a null reply).
// The auth service keeps users in an in-memory array (the tutorial's UsersRepository).
// Wire format (platform-notes section 8): create_user and get_user carry no key; replies come back on
// get_user.reply. Group ids: NestJS appends -client / -server; none is shared with a librdkafka consumer.
import 'reflect-metadata';
import {
  Body,
  Controller,
  Get,
  HttpCode,
  Inject,
  Module,
  NotFoundException,
  OnModuleInit,
  Param,
  ParseIntPipe,
  Post,
  ValidationPipe,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ClientKafka, ClientsModule, EventPattern, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { IsEmail, IsNotEmpty, IsString, MaxLength } from 'class-validator';
import { logLevel } from 'kafkajs';
import { lastValueFrom } from 'rxjs';

function arg(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  if (i > 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (fallback !== undefined) return fallback;
  throw new Error(`missing --${name}`);
}

const brokers = arg('brokers').split(',');
const kafkaClient = { brokers, logLevel: logLevel.ERROR, retry: { retries: 5, initialRetryTime: 100 } };
// The embedded broker answers an empty Fetch only after the full wait: keep it short (platform-notes section 7).
const kafkaConsumer = { maxWaitTimeInMs: 10, sessionTimeout: 10000, heartbeatInterval: 1000 };
// The topics are fresh: read from the start, so nothing produced before a group's first fetch is skipped.
const subscribe = { fromBeginning: true };

// ---- API gateway ----------------------------------------------------------------------------------------------------

class CreateUserDto {
  @IsString()
  @IsNotEmpty()
  @MaxLength(200)
  name!: string;

  @IsEmail()
  @IsNotEmpty()
  email!: string;
}

@Controller()
class GatewayController implements OnModuleInit {
  constructor(@Inject('AUTH_SERVICE') private readonly authClient: ClientKafka) {}

  async onModuleInit(): Promise<void> {
    this.authClient.subscribeToResponseOf('get_user');
    await this.authClient.connect();
  }

  @Post('auth/sign-up')
  @HttpCode(202)
  async signUp(@Body() dto: CreateUserDto): Promise<{ status: string }> {
    // emit() resolves once kafkajs's producer.send() does, i.e. after the broker's acknowledgement (acks=-1)
    await lastValueFrom(this.authClient.emit('create_user', { name: dto.name, email: dto.email }), {
      defaultValue: undefined,
    });
    return { status: 'accepted' };
  }

  @Get('users/:id')
  async getUser(@Param('id', ParseIntPipe) id: number): Promise<unknown> {
    const user = await lastValueFrom(this.authClient.send('get_user', { userId: id }), { defaultValue: null });
    if (user == null) throw new NotFoundException(`user ${id} not found`);
    return user;
  }
}

@Module({
  imports: [
    ClientsModule.register([
      {
        name: 'AUTH_SERVICE',
        transport: Transport.KAFKA,
        options: {
          client: { ...kafkaClient, clientId: 'api-gateway' },
          consumer: { ...kafkaConsumer, groupId: 'api-gateway' },
          subscribe,
        },
      },
    ]),
  ],
  controllers: [GatewayController],
})
class GatewayModule {}

// ---- auth microservice ----------------------------------------------------------------------------------------------

interface User {
  id: number;
  name: string;
  email: string;
}
const users: User[] = [];

@Controller()
class AuthController {
  @EventPattern('create_user')
  createUser(@Payload() data: { name: string; email: string }): void {
    users.push({ id: users.length + 1, name: data.name, email: data.email });
  }

  @MessagePattern('get_user')
  getUser(@Payload() data: { userId: number }): User | null {
    return users[data.userId - 1] ?? null;
  }
}

@Module({ controllers: [AuthController] })
class AuthModule {}

// ---- main -----------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const role = process.argv[2];
  if (role === 'gateway') {
    const app = await NestFactory.create(GatewayModule, { logger: ['error', 'warn'] });
    app.useGlobalPipes(new ValidationPipe({ whitelist: true }));
    app.enableShutdownHooks();
    await app.listen(Number(arg('port', '3000')), '127.0.0.1');
    console.log(`gateway listening on 127.0.0.1:${arg('port', '3000')}`);
  } else if (role === 'auth') {
    const app = await NestFactory.createMicroservice<MicroserviceOptions>(AuthModule, {
      transport: Transport.KAFKA,
      options: {
        client: { ...kafkaClient, clientId: 'auth' },
        consumer: { ...kafkaConsumer, groupId: 'auth-consumer' },
        subscribe,
      },
      logger: ['error', 'warn'],
    });
    app.enableShutdownHooks();
    await app.listen();
    console.log('auth microservice listening');
  } else {
    console.error('usage: node dist/main.js gateway|auth --brokers HOST:PORT [--port N]');
    process.exit(2);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
