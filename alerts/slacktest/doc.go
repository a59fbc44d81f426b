// Package slacktest is a local Slack for tests: a real HTTP server that
// speaks the parts of Slack's Web API (chat.postMessage, chat.update,
// conversations.history and conversations.replies) and of incoming
// webhooks that tenantguard's Slack notifier uses, records every request,
// and can be told to fail. The alerts tests and the collector's end-to-end
// tests share it, as slack-go tests itself with its own slacktest.
package slacktest
