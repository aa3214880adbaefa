// bnc serve through the official OpenAI client for JavaScript: models, completions and chat, whole and
// streamed, the greedy text bnc run gives; a 400 and a 401 arrive as the client's error classes.
// usage: node test_openai.mjs PORT KEY EXPECTED_TEXT (test_openai.sh installs the client and runs it)
import OpenAI from 'openai';

const [port, key, want] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: key, maxRetries: 0 });
let fails = 0;
const check = (ok, what) => { if (!ok) { fails++; console.log('FAIL: ' + what); } };
const prompt = 'In the beginning';

const models = await client.models.list();
check(models.data.length === 1 && models.data[0].object === 'model', `models: ${JSON.stringify(models.data)}`);
const c = await client.completions.create({ model: models.data[0].id, prompt, max_tokens: 12, temperature: 0 });
check(c.choices[0].text === want, `completion ${JSON.stringify(c.choices[0].text)}, bnc run ${JSON.stringify(want)}`);
check(c.usage.completion_tokens >= 1 && c.usage.total_tokens === c.usage.prompt_tokens + c.usage.completion_tokens,
      `usage ${JSON.stringify(c.usage)}`);
let text = '';
for await (const chunk of await client.completions.create({ model: 'm', prompt, max_tokens: 12, temperature: 0, stream: true }))
  text += chunk.choices[0]?.text ?? '';
check(text === want, `streamed ${JSON.stringify(text)}`);
const chat = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Who made light?' }],
                                                    max_tokens: 6, temperature: 0 });
check(chat.choices[0].message.role === 'assistant' && typeof chat.choices[0].message.content === 'string',
      `chat ${JSON.stringify(chat.choices[0])}`);
let deltas = '';
for await (const chunk of await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'Who made light?' }],
                                                                  max_tokens: 6, temperature: 0, stream: true }))
  deltas += chunk.choices[0]?.delta?.content ?? '';
check(deltas === chat.choices[0].message.content, `chat stream ${JSON.stringify(deltas)} vs ${JSON.stringify(chat.choices[0].message.content)}`);
try {
  await client.completions.create({ model: 'm', prompt, max_tokens: 0 });
  check(false, 'max_tokens 0 accepted');
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.status === 400 && /max_tokens/.test(e.message), `400: ${e}`);
}
try {
  await new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'wrong', maxRetries: 0 }).models.list();
  check(false, 'a wrong key accepted');
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError && e.status === 401, `401: ${e}`);
}
console.log(`openai client: ${fails ? fails + ' failed' : 'all checks passed'}`);
process.exit(fails ? 1 : 0);
