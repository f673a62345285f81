"""Alert routing on the cloud side: drift findings and gateway alerts POSTed to webhooks."""

from receiver.webhooks.sender import WebhookSender, signature
from receiver.webhooks.settings import Route, WebhookSettings, webhook_settings

__all__ = ["Route", "WebhookSender", "WebhookSettings", "signature", "webhook_settings"]
