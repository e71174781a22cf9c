// Drives a running `mill serve` with the official openai npm client and prints what it got as one JSON line;
// tests/openai_server_test.cpp compares that with the served model's own numbers.
//   node check.mjs BASE_URL MODEL
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "not-needed", maxRetries: 0, timeout: 20000 });
const result = {};

// Scoring as lm-eval's local-completions does it: the prompt's own log-probabilities.
const echoed = await client.completions.create({ model, prompt: "The mill wheel", max_tokens: 0, echo: true, logprobs: 1 });
result.echo = { text: echoed.choices[0].text, logprobs: echoed.choices[0].logprobs, usage: echoed.usage };

const completion = await client.completions.create({ model, prompt: "The mill", max_tokens: 8 });
result.completion = completion.choices[0].text;

const stream = await client.completions.create({ model, prompt: "The mill", max_tokens: 8, stream: true });
result.streamed = "";
result.stream_chunks = 0;
for await (const chunk of stream) {
  result.streamed += chunk.choices[0]?.text ?? "";
  result.stream_chunks += 1;
}

const messages = [{ role: "user", content: "Hello" }];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 6 });
result.chat = chat.choices[0].message.content;
result.chat_usage = chat.usage;

const chatStream = await client.chat.completions.create({
  model, messages, max_tokens: 6, stream: true, stream_options: { include_usage: true },
});
result.chat_streamed = "";
for await (const chunk of chatStream) {
  result.chat_streamed += chunk.choices[0]?.delta?.content ?? "";
  if (chunk.usage) result.chat_stream_usage = chunk.usage;
}

const sample = () => client.completions.create({ model, prompt: "The mill", max_tokens: 12, temperature: 1.0, seed: 5 });
result.seeded = [(await sample()).choices[0].text, (await sample()).choices[0].text];

try {
  await client.completions.create({ model, prompt: "x", top_p: 0 });
  result.error = null;
} catch (error) {
  result.error = { status: error.status, message: error.message };
}

console.log(JSON.stringify(result));
